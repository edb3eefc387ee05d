package projections

import (
	"context"
	"fmt"

	"gorm.io/gorm"
)

// ReplayOptions says how events read again from Kafka are projected.
type ReplayOptions struct {
	// Notify writes the deliveries the events owe to the outbox, so that
	// the dispatcher sends them (in order). Without it a replay owes
	// nothing to Pusher: clients see nothing.
	Notify bool
	// DryRun projects into temporary copies of the tables on one connection
	// of its own: nothing in the database changes.
	DryRun bool
}

// Replayer projects events read again from history (a Kafka replay) with
// live projection's rules: idempotent by event id, so events already stored
// change nothing.
type Replayer struct {
	db   *gorm.DB
	opts ReplayOptions
	live string
	done func()
}

// NewReplayer returns a Replayer writing to db (or, with DryRun, to
// temporary copies of its read models; call Close to drop them).
func NewReplayer(ctx context.Context, db *gorm.DB, opts ReplayOptions) (*Replayer, error) {
	r := &Replayer{db: db, opts: opts, done: func() {}}
	if err := db.WithContext(ctx).Raw(`SELECT current_schema()`).Scan(&r.live).Error; err != nil {
		return nil, fmt.Errorf("read the live schema: %w", err)
	}
	if !opts.DryRun {
		return r, nil
	}
	tdb, done, err := sessionDB(ctx, db)
	if err != nil {
		return nil, err
	}
	r.db, r.done = tdb, done
	err = tdb.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		for _, t := range []string{"events", "deliveries", "rooms", "messages", "room_members"} {
			if err := copyTable(tx, r.live, t, "", true); err != nil {
				return err
			}
		}
		// The read models are copied whole: the replayed events apply to
		// them. Stored events are copied as the replay meets their ids.
		for _, m := range readModels {
			if err := tx.Exec(`INSERT INTO pg_temp.` + qident(m.table) + ` SELECT * FROM ` + qident(r.live) + `.` + qident(m.table)).Error; err != nil {
				return fmt.Errorf("copy %s: %w", m.table, err)
			}
		}
		return nil
	})
	if err != nil {
		done()
		return nil, fmt.Errorf("dry run: %w", err)
	}
	return r, nil
}

// Close releases the dry run's connection and its temporary tables.
func (r *Replayer) Close() { r.done() }

// Project projects items in one transaction, set-based like ProjectBatch
// (in order: a room's events apply and are recorded in the order given).
// Results are in the order of items. Like ProjectBatch it splits a batch
// around the events Postgres refuses (domain.ErrUnstorable in their
// Result), so that the others are stored. A returned error is transient;
// parts of a split batch may have committed before it, which a replay run
// again counts as duplicates.
func (r *Replayer) Project(ctx context.Context, items []Item) ([]Result, error) {
	results := make([]Result, len(items))
	b := &batch{items: items, results: results, silent: !r.opts.Notify}
	if err := b.prepare(); err != nil {
		return nil, err
	}
	attempt := func(part *batch) error {
		return transaction(ctx, r.db, func(tx *gorm.DB, cp copyFunc) error {
			if r.opts.DryRun {
				if err := r.copyStored(tx, part.items); err != nil {
					return err
				}
			}
			part.reset()
			part.copy = cp
			return part.run(tx)
		})
	}
	if err := projectSplitting(b, attempt, func(*batch) {}); err != nil {
		return nil, fmt.Errorf("replay a batch of %d events: %w", len(items), err)
	}
	return results, nil
}

// copyStored copies the stored events with the items' ids into the dry
// run's temporary events table, so that they count as duplicates.
func (r *Replayer) copyStored(tx *gorm.DB, items []Item) error {
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.Env.ID
	}
	if err := tx.Exec(`INSERT INTO pg_temp.events OVERRIDING SYSTEM VALUE SELECT * FROM `+qident(r.live)+`.events
		WHERE id = ANY(?::text[]) ON CONFLICT DO NOTHING`, arr(ids)).Error; err != nil {
		return fmt.Errorf("dry run: copy stored events: %w", err)
	}
	return nil
}

// Changes reports how the replay changed (dry run: would change) each read
// model, and the events and deliveries it added. Only a dry run knows it.
func (r *Replayer) Changes(ctx context.Context) ([]TableChange, error) {
	if !r.opts.DryRun {
		return nil, nil
	}
	db := r.db.WithContext(ctx)
	out, err := compareReadModels(db, r.live, "pg_temp")
	if err != nil {
		return nil, err
	}
	for _, t := range []string{"events", "deliveries"} {
		tc := TableChange{Table: t}
		q := `SELECT count(*) FROM pg_temp.` + t + ` n WHERE NOT EXISTS (SELECT 1 FROM ` + qident(r.live) + `.` + t + ` o WHERE o.id = n.id)`
		if t == "deliveries" {
			q = `SELECT count(*) FROM pg_temp.deliveries`
		}
		if err := db.Raw(q).Scan(&tc.Added).Error; err != nil {
			return nil, fmt.Errorf("count %s: %w", t, err)
		}
		out = append(out, tc)
	}
	return out, nil
}
