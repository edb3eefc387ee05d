package projections

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// Backlog is the state of the outbox.
type Backlog struct {
	Pending   int64
	Oldest    time.Time     // when the oldest pending delivery was committed; zero when none
	OldestAge time.Duration // age of the oldest pending delivery at the read; 0 when none
	Parked    int64
}

// The outbox's state is read in two statements: the oldest pending delivery
// and the parked count, cheap at any size, and the pending count, which
// grows with the backlog and may time out on a huge one without taking the
// others with it.
//
// The oldest pending delivery is the first in id order, one step into the
// pending index (ids rise in each room's commit order, and a batch takes its
// ids just before it commits, so the first id is the oldest commit but for
// a batch in flight at that moment); min(created_at) read the whole table.
// The parked count walks deliveries_parked. Sequential scans are
// discouraged for the statement: with the outbox's statistics missing or
// stale (it churns faster than autoanalyze), "parked_at IS NOT NULL" is
// guessed to match nearly every row and was counted by reading the whole
// table. TestBacklogStatementsWalkTheIndexes holds the plans.
const (
	oldestPendingSQL = `SELECT
	(SELECT created_at FROM deliveries WHERE delivered_at IS NULL AND parked_at IS NULL ORDER BY id LIMIT 1) AS oldest,
	(SELECT count(*) FROM deliveries WHERE parked_at IS NOT NULL) AS parked`
	pendingCountSQL = `SELECT count(*) FROM deliveries WHERE delivered_at IS NULL AND parked_at IS NULL`
	// noSeqScanSQL is set for oldestPendingSQL's transaction.
	noSeqScanSQL = `SET LOCAL enable_seqscan = off`
)

// OldestPending returns when the oldest pending delivery was committed (zero
// when none is pending) and how many deliveries are parked.
func (o *Outbox) OldestPending(ctx context.Context) (time.Time, int64, error) {
	var r struct {
		Oldest *time.Time
		Parked int64
	}
	err := o.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec(noSeqScanSQL).Error; err != nil {
			return err
		}
		return scanRaw(tx.Raw(oldestPendingSQL), &r)
	})
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("read the outbox's oldest pending delivery: %w", err)
	}
	return deref(r.Oldest), r.Parked, nil
}

// PendingCount counts the deliveries not yet accepted by Pusher nor parked.
func (o *Outbox) PendingCount(ctx context.Context) (int64, error) {
	var n int64
	if err := o.db.WithContext(ctx).Raw(pendingCountSQL).Row().Scan(&n); err != nil {
		return 0, fmt.Errorf("count pending deliveries: %w", err)
	}
	return n, nil
}

// Backlog reports how many deliveries are pending and parked, and the age of
// the oldest pending one.
func (o *Outbox) Backlog(ctx context.Context) (Backlog, error) {
	oldest, parked, err := o.OldestPending(ctx)
	if err != nil {
		return Backlog{}, fmt.Errorf("read outbox backlog: %w", err)
	}
	pending, err := o.PendingCount(ctx)
	if err != nil {
		return Backlog{}, fmt.Errorf("read outbox backlog: %w", err)
	}
	b := Backlog{Pending: pending, Oldest: oldest, Parked: parked}
	if !oldest.IsZero() {
		b.OldestAge = max(time.Since(oldest), 0)
	}
	return b, nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
