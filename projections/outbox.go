package projections

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"time"

	"gorm.io/gorm"
)

// Outbox reads and settles the deliveries that projections owe to Pusher.
type Outbox struct {
	db   *gorm.DB
	keep bool // delivered rows stay (delivered_at set) until Purge

	mu      sync.Mutex
	conn    *sql.Conn // holds the dispatch lock while leading
	leading bool
}

// NewOutbox returns the outbox stored in db. A delivery Pusher accepted is
// deleted at once, unless KeepDelivered is set.
func NewOutbox(db *gorm.DB) *Outbox { return &Outbox{db: db} }

// KeepDelivered makes MarkDelivered keep delivered rows, with delivered_at
// set, for Purge to delete once their retention has passed (an audit trail
// of what Pusher accepted and when). It returns o.
//
// Deleting at once is the default because it is the cheaper write: a delete
// only marks the row (~55 bytes of WAL), while setting delivered_at writes a
// new copy of it, payload included (~550 bytes of WAL and an index entry),
// and that copy must still be deleted by the purge later.
func (o *Outbox) KeepDelivered() *Outbox {
	o.keep = true
	return o
}

// The statements that change deliveries by id. None of them says "delivered_at
// IS NULL" in its WHERE clause, though each acts only on undelivered rows:
// that condition matched the partial index deliveries_undelivered_event
// (dropped since, migration 00007; a future partial index on that condition
// would bring the trap back), and while the table's statistics are missing
// or stale (it churns faster than autoanalyze runs, and without statistics
// "IS NULL" is guessed to match 0.5% of rows) the planner read that whole
// index, dead entries and all, and hash-joined the ids, for every call,
// where one primary-key probe per id is all it takes. The condition is applied in the SET clause instead (or, for a delete, not at
// all: a delivered row that is still there is deleted as well, which is what
// marking it means). TestOutboxStatementsProbeThePrimaryKey holds them to it.
const (
	markDeliveredSQL     = `DELETE FROM deliveries AS d USING unnest(?::bigint[]) AS u(id) WHERE d.id = u.id`
	markDeliveredKeepSQL = `UPDATE deliveries AS d SET delivered_at = coalesce(d.delivered_at, now()),
			attempts = d.attempts + CASE WHEN d.delivered_at IS NULL THEN 1 ELSE 0 END
		FROM unnest(?::bigint[]) AS u(id) WHERE d.id = u.id`
	recordFailureSQL = `UPDATE deliveries AS d
		SET attempts = d.attempts + CASE WHEN d.delivered_at IS NULL THEN 1 ELSE 0 END,
			last_error = CASE WHEN d.delivered_at IS NULL THEN ? ELSE d.last_error END
		FROM unnest(?::bigint[]) AS u(id) WHERE d.id = u.id`
)

// MarkDelivered records that Pusher accepted the deliveries with these ids:
// it deletes them, or with KeepDelivered sets their delivered_at.
func (o *Outbox) MarkDelivered(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	q := markDeliveredSQL
	if o.keep {
		q = markDeliveredKeepSQL
	}
	err := o.db.WithContext(ctx).Exec(q, arr(ids)).Error
	if err != nil {
		return fmt.Errorf("mark %d deliveries delivered: %w", len(ids), err)
	}
	return nil
}

// RecordFailure counts a failed attempt for the deliveries and keeps the
// reason; they stay pending.
func (o *Outbox) RecordFailure(ctx context.Context, ids []int64, reason string) error {
	if len(ids) == 0 {
		return nil
	}
	err := o.db.WithContext(ctx).Exec(recordFailureSQL, truncate(reason, 1000), arr(ids)).Error
	if err != nil {
		return fmt.Errorf("record failure of %d deliveries: %w", len(ids), err)
	}
	return nil
}

// Park takes a delivery Pusher rejects out of the pending set with its
// reason; it is kept (see Parked) and never sent again unless re-queued.
func (o *Outbox) Park(ctx context.Context, id int64, reason string) error {
	err := o.db.WithContext(ctx).Exec(`UPDATE deliveries SET parked_at = now(), parked_reason = ?, attempts = attempts + 1
		WHERE id = ? AND delivered_at IS NULL`, truncate(reason, 1000), id).Error
	if err != nil {
		return fmt.Errorf("park delivery %d: %w", id, err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// Purge deletes deliveries Pusher accepted more than olderThan ago, at most
// limit of them, and returns how many it deleted.
func (o *Outbox) Purge(ctx context.Context, olderThan time.Duration, limit int) (int64, error) {
	res := o.db.WithContext(ctx).Exec(`DELETE FROM deliveries WHERE id IN (
		SELECT id FROM deliveries WHERE delivered_at < now() - make_interval(secs => ?) ORDER BY id LIMIT ?)`,
		olderThan.Seconds(), limit)
	if res.Error != nil {
		return 0, fmt.Errorf("purge delivered deliveries: %w", res.Error)
	}
	return res.RowsAffected, nil
}
