package projections

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Open connects to the Postgres database at url through GORM (pgx underneath)
// and checks that it answers. The URL is never included in errors: it may
// hold a password.
func Open(ctx context.Context, dsn string, maxConns int) (*gorm.DB, error) {
	pgxConfig, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", redact(err, dsn))
	}
	// Plan every execution with its real parameters. pgx caches prepared
	// statements, and Postgres would otherwise settle on a generic plan made
	// while the tables were small (a sequential scan of messages, a hash join
	// over all of events) and keep it as they grow: batches then slow down
	// within a minute of a start.
	if pgxConfig.RuntimeParams == nil {
		pgxConfig.RuntimeParams = map[string]string{}
	}
	if _, set := pgxConfig.RuntimeParams["plan_cache_mode"]; !set {
		pgxConfig.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	}
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: stdlib.OpenDB(*pgxConfig)}), &gorm.Config{
		SkipDefaultTransaction: true,
		Logger:                 logger.Discard,
		NowFunc:                func() time.Time { return time.Now().UTC() },
	})
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", redact(err, dsn))
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	if maxConns > 0 {
		sqlDB.SetMaxOpenConns(maxConns)
		sqlDB.SetMaxIdleConns(maxConns)
	}
	sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := sqlDB.PingContext(pingCtx); err != nil {
		_ = sqlDB.Close()
		return nil, fmt.Errorf("connect to postgres: %w", redact(err, dsn))
	}
	return db, nil
}

// scanRaw runs q (a Raw query) and scans its rows into dest as GORM's Scan
// does, without Scan's statement recorder: that renders the SQL with every
// argument inlined for the logger, even a discarding one (regexp and fmt
// over a batch's arrays, for every statement).
func scanRaw(q *gorm.DB, dest any) error {
	rows, err := q.Rows()
	if err != nil {
		return err
	}
	defer func() { _ = rows.Close() }()
	if rows.Next() {
		if err := q.ScanRows(rows, dest); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return rows.Close()
}

// SQL returns the database/sql handle under db (for migrations and health checks).
func SQL(db *gorm.DB) (*sql.DB, error) { return db.DB() }

// Ping checks that the database answers within ctx.
func Ping(ctx context.Context, db *gorm.DB) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	return sqlDB.PingContext(ctx)
}

// Close closes db's connection pool.
func Close(db *gorm.DB) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

// redact keeps a database URL and its password out of an error message.
func redact(err error, dsn string) error {
	if err == nil || dsn == "" {
		return err
	}
	secrets := []string{dsn}
	if u, perr := url.Parse(dsn); perr == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			secrets = append(secrets, pw, url.QueryEscape(pw))
		}
	}
	return redactedError{err: err, secrets: secrets}
}

type redactedError struct {
	err     error
	secrets []string
}

func (e redactedError) Error() string {
	msg := e.err.Error()
	for _, s := range e.secrets {
		msg = strings.ReplaceAll(msg, s, "[redacted]")
	}
	return msg
}

func (e redactedError) Unwrap() error { return e.err }

// logAttrs is the set of slog attributes every projection log line carries.
func logAttrs(eventID, eventType, roomID string) []any {
	attrs := []any{slog.String("event_id", eventID), slog.String("type", eventType)}
	if roomID != "" {
		attrs = append(attrs, slog.String("room_id", roomID))
	}
	return attrs
}

// copyFunc writes rows into table's columns with COPY, on the connection of
// the transaction it was made for; rows writes them (w.row(), then one value
// per column, for each row).
type copyFunc func(ctx context.Context, table string, columns []string, rows func(w *copyWriter)) error

// transaction runs f in a transaction on one connection of db, with a
// copyFunc on that connection. COPY is how batches write their largest
// tables: a multi-row INSERT's parameter arrays are encoded into a buffer
// pgx regrows from 256 bytes for every statement and then copied into
// another, which made a third of everything the worker allocated (and see
// copyWriter for why the rows are not encoded by pgx's CopyFrom either).
func transaction(ctx context.Context, db *gorm.DB, f func(tx *gorm.DB, cp copyFunc) error) error {
	run := func(c *gorm.DB) error {
		conn, ok := c.Statement.ConnPool.(*sql.Conn)
		if !ok {
			return fmt.Errorf("transaction: not on a single connection (%T)", c.Statement.ConnPool)
		}
		cp := func(ctx context.Context, table string, columns []string, rows func(w *copyWriter)) error {
			w := newCopyWriter(len(columns))
			rows(w)
			stream, err := w.finish()
			if err != nil {
				w.release()
				return err
			}
			// The transaction is open on this connection; Raw lends its
			// driver connection between the transaction's statements.
			err = conn.Raw(func(dc any) error {
				sc, ok := dc.(*stdlib.Conn)
				if !ok {
					return fmt.Errorf("COPY needs pgx's database/sql driver, not %T", dc)
				}
				_, err := sc.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(stream), copySQL(table, columns))
				return err
			})
			if err == nil {
				// Only a copy that succeeded is sure to be done with the
				// stream: when the connection fails, PgConn.CopyFrom returns
				// while its goroutine may still be reading it, so the buffer
				// is then left to the collector rather than reused.
				w.release()
			}
			return err
		}
		return c.Transaction(func(tx *gorm.DB) error { return f(tx, cp) })
	}
	if _, ok := db.Statement.ConnPool.(*sql.Conn); ok {
		return run(db.WithContext(ctx)) // already on one connection (a dry run's, with its temporary tables)
	}
	return db.WithContext(ctx).Connection(run)
}

// arr passes xs as one Postgres array parameter, encoded by pgx itself
// (GORM would expand a plain slice into a list of placeholders).
func arr[T any](xs []T) pgtype.Array[T] {
	return pgtype.Array[T]{Elements: xs, Dims: []pgtype.ArrayDimension{{Length: int32(len(xs)), LowerBound: 1}}, Valid: true}
}

func qident(s string) string { return pgx.Identifier{s}.Sanitize() }

// discardConn closes conn for good instead of handing it back to the pool
// (its session holds locks or temporary tables).
func discardConn(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close()
}
