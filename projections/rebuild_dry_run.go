package projections

import (
	"context"
	"fmt"

	"gorm.io/gorm"
)

// dryRun rebuilds into temporary tables on one connection of its own and
// compares them with the live read models; nothing outlives the connection.
func (r *rebuilder) dryRun(ctx context.Context) (RebuildSummary, error) {
	s := RebuildSummary{DryRun: true}
	tdb, done, err := sessionDB(ctx, r.db)
	if err != nil {
		return s, err
	}
	defer done()
	for _, m := range readModels {
		if err := copyTable(tdb.WithContext(ctx), r.live, m.table, "", true); err != nil {
			return s, fmt.Errorf("dry run: %w", err)
		}
	}
	r.phase = "building"
	to, err := r.bound(ctx)
	if err != nil {
		return s, err
	}
	if r.total, err = r.countBetween(ctx, 0, to); err != nil {
		return s, fmt.Errorf("count events: %w", err)
	}
	// Temporary tables come first in the search path: the projection rules
	// write to them.
	_, err = r.readEvents(ctx, 0, to, func(ch *chunk) error {
		if err := tdb.WithContext(ctx).Transaction(func(tx *gorm.DB) error { return applyChunk(tx, ch, &r.counts) }); err != nil {
			return fmt.Errorf("dry run up to position %d: %w", ch.last, err)
		}
		r.logProblems(ch)
		r.done += ch.read
		r.report()
		return nil
	})
	if err != nil {
		return r.summary(s), err
	}
	r.phase = "comparing"
	r.report()
	if s.Tables, err = compareReadModels(tdb.WithContext(ctx), r.live, "pg_temp"); err != nil {
		return r.summary(s), err
	}
	s.SeqsWouldLower, err = countRoomsBelowLive(tdb.WithContext(ctx), r.live, "pg_temp")
	return r.summary(s), err
}
