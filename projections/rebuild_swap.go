package projections

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"
)

// checkSwappable refuses tables the swap cannot carry over: a view, a
// foreign key or a trigger on a live read model would stay with the old table.
func (r *rebuilder) checkSwappable(ctx context.Context) error {
	var found []string
	err := r.db.WithContext(ctx).Raw(`
		WITH t AS (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		           WHERE n.nspname = ? AND c.relname = ANY(?::text[]))
		SELECT DISTINCT 'view ' || v.oid::regclass::text FROM pg_depend d JOIN pg_rewrite w ON w.oid = d.objid
		  JOIN pg_class v ON v.oid = w.ev_class WHERE d.refobjid IN (SELECT oid FROM t) AND v.oid NOT IN (SELECT oid FROM t)
		UNION ALL
		SELECT 'foreign key ' || conname || ' on ' || conrelid::regclass::text FROM pg_constraint
		  WHERE contype = 'f' AND (confrelid IN (SELECT oid FROM t) OR conrelid IN (SELECT oid FROM t))
		UNION ALL
		SELECT 'trigger ' || tgname || ' on ' || tgrelid::regclass::text FROM pg_trigger
		  WHERE tgrelid IN (SELECT oid FROM t) AND NOT tgisinternal`, r.live, arr(readModelNames())).Scan(&found).Error
	if err != nil {
		return fmt.Errorf("inspect the read models: %w", err)
	}
	if len(found) > 0 {
		return fmt.Errorf("rebuild cannot swap read models that other objects depend on (%s): drop them, rebuild, and create them again",
			strings.Join(found, ", "))
	}
	return nil
}

// swap applies the events after cursor and swaps the rebuilt tables in, in
// one transaction under EXCLUSIVE locks on the live read models and events.
func (r *rebuilder) swap(ctx context.Context, cursor int64) (held time.Duration, tail int64, err error) {
	var locked time.Time
	next := r.counts.clone()
	var (
		applied []*chunk
		kept    int64
		retired string
	)
	err = r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var err error
		next, applied = r.counts.clone(), nil
		if err := tx.Exec(fmt.Sprintf(`SET LOCAL lock_timeout = %d`, r.opts.LockTimeout.Milliseconds())).Error; err != nil {
			return err
		}
		tables := make([]string, 0, len(readModels)+1)
		for _, m := range readModels {
			tables = append(tables, r.qlive(m.table))
		}
		tables = append(tables, r.qlive("events"))
		if err := tx.Exec(`LOCK TABLE ` + strings.Join(tables, ", ") + ` IN EXCLUSIVE MODE`).Error; err != nil {
			return fmt.Errorf("lock the live read models: %w", err)
		}
		locked = time.Now()
		// A migration that ran meanwhile may have changed the live tables
		// the rebuild copied: swapping would undo it.
		if v, err := migrationVersion(tx); err != nil {
			return err
		} else if v != r.version {
			return fmt.Errorf("%w: the database went from migration %d to %d during the rebuild; run it again", ErrSchemaChanged, r.version, v)
		}
		// Every event is committed now, and none can be added.
		if err := tx.Exec(`SET LOCAL search_path = ` + qident(RebuildSchema) + `, ` + qident(r.live)).Error; err != nil {
			return err
		}
		last := cursor
		for {
			ch, err := r.readChunk(tx, last, 1<<62)
			if err != nil {
				return err
			}
			if ch.read == 0 {
				break
			}
			if err := applyChunk(tx, ch, &next); err != nil {
				return fmt.Errorf("rebuild events up to position %d: %w", ch.last, err)
			}
			applied = append(applied, ch)
			last = ch.last
		}
		if err := tx.Exec(`SET LOCAL search_path = ` + qident(r.live)).Error; err != nil {
			return err
		}
		// No room's last seq may go down (see ErrSeqWouldRegress).
		if kept, err = r.guardSeqs(tx); err != nil {
			return err
		}
		if retired, err = retiredName(tx, time.Now()); err != nil {
			return err
		}
		if err := tx.Exec(`CREATE SCHEMA ` + qident(retired)).Error; err != nil {
			return err
		}
		for _, m := range readModels {
			if err := tx.Exec(`ALTER TABLE ` + r.qlive(m.table) + ` SET SCHEMA ` + qident(retired)).Error; err != nil {
				return fmt.Errorf("retire %s: %w", m.table, err)
			}
			if err := tx.Exec(`ALTER TABLE ` + qident(RebuildSchema) + `.` + qident(m.table) + ` SET SCHEMA ` + qident(r.live)).Error; err != nil {
				return fmt.Errorf("swap in %s: %w", m.table, err)
			}
			if err := copyGrants(tx, qident(retired)+"."+qident(m.table), r.qlive(m.table)); err != nil {
				return err
			}
		}
		return r.saveProgress(tx, last, "swapped", next)
	})
	if err != nil {
		return 0, 0, fmt.Errorf("swap the rebuilt read models in: %w", err)
	}
	held = time.Since(locked)
	for _, ch := range applied {
		r.logProblems(ch)
		tail += ch.read
	}
	r.counts = next
	r.done += tail
	r.seqsKept, r.retired = kept, retired
	return held, tail, nil
}

// copyGrants gives the new table the privileges granted on the old one.
func copyGrants(tx *gorm.DB, from, to string) error {
	var grants []struct {
		Privilege, Grantee string
		Grantable          bool
	}
	if err := tx.Raw(`SELECT a.privilege_type AS privilege,
			CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END AS grantee,
			a.is_grantable AS grantable
		FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = ?::regclass AND a.grantee <> c.relowner`, from).Scan(&grants).Error; err != nil {
		return fmt.Errorf("read grants on %s: %w", from, err)
	}
	for _, g := range grants {
		q := `GRANT ` + g.Privilege + ` ON ` + to + ` TO ` + g.Grantee
		if g.Grantable {
			q += ` WITH GRANT OPTION`
		}
		if err := tx.Exec(q).Error; err != nil {
			return fmt.Errorf("grant on %s: %w", to, err)
		}
	}
	return nil
}

func isLockTimeout(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "55P03" || pe.Code == "40P01")
}
