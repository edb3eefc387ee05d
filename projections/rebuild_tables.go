package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// readModel is a table rebuilt from the events table. A read model added
// later is added here (and to the projection rules: batch_apply.go,
// batch_write.go).
type readModel struct {
	table string
	key   []string // primary key columns
	// ignore are columns a rebuild cannot reproduce (when the row was written).
	ignore []string
}

// readModels are listed in the order live projection locks them (rooms, then
// messages, then room_members): the swap locks them in the same order, so it
// cannot deadlock with a projection.
var readModels = []readModel{
	{table: "rooms", key: []string{"room_id"}, ignore: []string{"updated_at"}},
	{table: "messages", key: []string{"id"}},
	{table: "room_members", key: []string{"room_id", "user_id"}},
}

func readModelNames() []string {
	out := make([]string, len(readModels))
	for i, m := range readModels {
		out[i] = m.table
	}
	return out
}

// migrationVersion is the database's newest applied migration (goose's table).
func migrationVersion(db *gorm.DB) (int64, error) {
	var version int64
	if err := db.Raw(`SELECT COALESCE((SELECT max(version_id) FROM goose_db_version WHERE is_applied), 0)`).Scan(&version).Error; err != nil {
		return 0, fmt.Errorf("read the migration version: %w", err)
	}
	return version, nil
}

// setup creates the rebuild schema, or finds the interrupted rebuild in it,
// and returns the cursor to continue from.
func (r *rebuilder) setup(ctx context.Context) (cursor int64, resumed bool, err error) {
	version, err := migrationVersion(r.db.WithContext(ctx))
	if err != nil {
		return 0, false, err
	}
	r.version = version
	rb := qident(RebuildSchema)
	var exists bool
	if err := r.db.WithContext(ctx).Raw(`SELECT to_regclass(?) IS NOT NULL`, RebuildSchema+".rebuild_progress").Scan(&exists).Error; err != nil {
		return 0, false, fmt.Errorf("look for an interrupted rebuild: %w", err)
	}
	if exists {
		var p struct {
			LiveSchema string
			Migration  int64
			Cursor     int64
			Phase      string
			Counts     string
		}
		if err := r.db.WithContext(ctx).Raw(`SELECT live_schema, migration, cursor, phase, counts::text AS counts FROM ` + rb + `.rebuild_progress`).Scan(&p).Error; err != nil {
			return 0, false, fmt.Errorf("read the interrupted rebuild: %w", err)
		}
		switch {
		case r.opts.Restart:
			r.log.Info("discarding the interrupted rebuild (restart)", slog.Int64("cursor", p.Cursor))
		case p.Phase != "building":
			r.log.Info("the previous rebuild finished; starting a new one")
		case p.Migration != version || p.LiveSchema != r.live:
			r.log.Warn("the interrupted rebuild was made for another schema version: starting over",
				slog.Int64("its_version", p.Migration), slog.Int64("version", version))
		default:
			if err := json.Unmarshal([]byte(p.Counts), &r.counts); err != nil {
				return 0, false, fmt.Errorf("read the interrupted rebuild's counts: %w", err)
			}
			r.log.Info("resuming the interrupted rebuild", slog.Int64("cursor", p.Cursor))
			return p.Cursor, true, nil
		}
	}
	err = r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		stmts := []string{
			`DROP SCHEMA IF EXISTS ` + rb + ` CASCADE`,
			`CREATE SCHEMA ` + rb,
			`CREATE TABLE ` + rb + `.rebuild_progress (
				id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
				live_schema text NOT NULL,
				migration bigint NOT NULL,
				cursor bigint NOT NULL DEFAULT 0,
				phase text NOT NULL DEFAULT 'building',
				counts jsonb NOT NULL DEFAULT '{}',
				started_at timestamptz NOT NULL DEFAULT now(),
				updated_at timestamptz NOT NULL DEFAULT now())`,
		}
		for _, q := range stmts {
			if err := tx.Exec(q).Error; err != nil {
				return err
			}
		}
		if err := tx.Exec(`INSERT INTO `+rb+`.rebuild_progress (live_schema, migration) VALUES (?, ?)`, r.live, version).Error; err != nil {
			return err
		}
		for _, m := range readModels {
			if err := copyTable(tx, r.live, m.table, rb, false); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("create the rebuild schema %s: %w", RebuildSchema, err)
	}
	r.counts = Counts{}
	return 0, false, nil
}

// copyTable creates an empty table like schema.table in the schema target
// (already quoted; "" for a temporary table): same columns, defaults,
// constraints, storage options and indexes, the indexes under the same names.
func copyTable(tx *gorm.DB, schema, table, target string, temp bool) error {
	src := qident(schema) + "." + qident(table)
	dst := target + "." + qident(table)
	create := `CREATE TABLE ` + dst
	if temp {
		dst = qident(table)
		create = `CREATE TEMPORARY TABLE ` + dst
	}
	if err := tx.Exec(create + ` (LIKE ` + src + ` INCLUDING ALL EXCLUDING INDEXES)`).Error; err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	var opts []string
	if err := tx.Raw(`SELECT unnest(reloptions) FROM pg_class WHERE oid = ?::regclass`, src).Scan(&opts).Error; err != nil {
		return fmt.Errorf("read storage options of %s: %w", src, err)
	}
	if len(opts) > 0 && !temp {
		if err := tx.Exec(`ALTER TABLE ` + dst + ` SET (` + strings.Join(opts, ", ") + `)`).Error; err != nil {
			return fmt.Errorf("set storage options of %s: %w", dst, err)
		}
	}
	var idx []struct {
		Name, Def, On string
		Constr        *string
	}
	// pg_get_indexdef names the table as quote_ident does (quoted only when needed).
	if err := tx.Raw(`SELECT ic.relname AS name, pg_get_indexdef(i.indexrelid) AS def, pg_get_constraintdef(c.oid) AS constr,
			quote_ident(tn.nspname) || '.' || quote_ident(tc.relname) AS on
		FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
		JOIN pg_class tc ON tc.oid = i.indrelid JOIN pg_namespace tn ON tn.oid = tc.relnamespace
		LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
		WHERE i.indrelid = ?::regclass ORDER BY ic.relname`, src).Scan(&idx).Error; err != nil {
		return fmt.Errorf("read indexes of %s: %w", src, err)
	}
	for _, ix := range idx {
		var q string
		if ix.Constr != nil {
			q = `ALTER TABLE ` + dst + ` ADD CONSTRAINT ` + qident(ix.Name) + ` ` + *ix.Constr
		} else {
			on := " ON " + ix.On + " "
			if !strings.Contains(ix.Def, on) {
				return fmt.Errorf("copy index %s: unexpected definition %q", ix.Name, ix.Def)
			}
			q = strings.Replace(ix.Def, on, " ON "+dst+" ", 1)
		}
		if err := tx.Exec(q).Error; err != nil {
			return fmt.Errorf("create index %s on %s: %w", ix.Name, dst, err)
		}
	}
	return nil
}

// compareReadModels counts how the read models in schema ("pg_temp" for
// temporary tables) differ from those in the schema live.
func compareReadModels(db *gorm.DB, live, schema string) ([]TableChange, error) {
	var out []TableChange
	for _, m := range readModels {
		var cols []string
		if err := db.Raw(`SELECT attname FROM pg_attribute WHERE attrelid = ?::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
			qident(live)+"."+qident(m.table)).Scan(&cols).Error; err != nil {
			return nil, fmt.Errorf("read columns of %s: %w", m.table, err)
		}
		var on, newCols, oldCols []string
		for _, k := range m.key {
			on = append(on, "n."+qident(k)+" = o."+qident(k))
		}
		for _, c := range cols {
			if !contains(m.ignore, c) {
				newCols, oldCols = append(newCols, "n."+qident(c)), append(oldCols, "o."+qident(c))
			}
		}
		nt, ot := qident(schema)+"."+qident(m.table), qident(live)+"."+qident(m.table)
		if schema == "pg_temp" {
			nt = "pg_temp." + qident(m.table)
		}
		join := strings.Join(on, " AND ")
		tc := TableChange{Table: m.table}
		err := db.Raw(`SELECT
			(SELECT count(*) FROM `+nt+` n WHERE NOT EXISTS (SELECT 1 FROM `+ot+` o WHERE `+join+`)) AS added,
			(SELECT count(*) FROM `+nt+` n JOIN `+ot+` o ON `+join+` WHERE (`+strings.Join(newCols, ", ")+`) IS DISTINCT FROM (`+strings.Join(oldCols, ", ")+`)) AS changed,
			(SELECT count(*) FROM `+ot+` o WHERE NOT EXISTS (SELECT 1 FROM `+nt+` n WHERE `+join+`)) AS removed`).
			Row().Scan(&tc.Added, &tc.Changed, &tc.Removed)
		if err != nil {
			return nil, fmt.Errorf("compare %s: %w", m.table, err)
		}
		out = append(out, tc)
	}
	return out, nil
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// sessionDB returns a GORM handle bound to one connection of db's pool, for
// work that needs one session (temporary tables). done discards the
// connection.
func sessionDB(ctx context.Context, db *gorm.DB) (*gorm.DB, func(), error) {
	sqlDB, err := db.DB()
	if err != nil {
		return nil, nil, err
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("connect: %w", err)
	}
	gdb, err := gorm.Open(postgres.New(postgres.Config{Conn: conn}), &gorm.Config{
		SkipDefaultTransaction: true,
		Logger:                 logger.Discard,
		NowFunc:                func() time.Time { return time.Now().UTC() },
	})
	if err != nil {
		discardConn(conn)
		return nil, nil, err
	}
	return gdb, func() { discardConn(conn) }, nil
}
