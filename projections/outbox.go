package projections

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/gorm"

	"github.com/roomcast/roomcast/domain"
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
// and that copy must still be deleted by the purge later. BenchmarkIngest
// measured ~5% more events/s without retention (three runs each; about the
// size of its run-to-run noise), the purge's deletes not counted.
func (o *Outbox) KeepDelivered() *Outbox {
	o.keep = true
	return o
}

// dispatchLockKey is the Postgres advisory lock that elects the one process
// dispatching a database's outbox ("roomcast" in ASCII).
const dispatchLockKey int64 = 0x726f6f6d63617374

// Lead reports whether this process is the outbox's dispatcher, taking the
// database-wide dispatch lock when it is free. Several `roomcast run`
// processes share one database safely: one dispatches, the others consume
// and project, and one of them takes over within a poll when the leader
// stops or loses its connection.
func (o *Outbox) Lead(ctx context.Context) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.conn != nil && o.leading {
		if ctx.Err() != nil {
			// The caller is stopping: the lock is held until its calls in
			// flight are settled and it calls Release.
			return true, ctx.Err()
		}
		// Not the caller's context: pgx closes a connection whose operation
		// is cancelled, and the lock would go with the session.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		err := o.conn.PingContext(pctx)
		cancel()
		if err == nil {
			return true, nil
		}
		// The session, and with it the lock, is gone.
		o.dropConnLocked()
	}
	if o.conn == nil {
		sqlDB, err := o.db.DB()
		if err != nil {
			return false, err
		}
		conn, err := sqlDB.Conn(ctx)
		if err != nil {
			return false, fmt.Errorf("dispatch lock: %w", err)
		}
		o.conn = conn
	}
	var ok bool
	if err := o.conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, dispatchLockKey).Scan(&ok); err != nil {
		o.dropConnLocked()
		return false, fmt.Errorf("dispatch lock: %w", err)
	}
	o.leading = ok
	return ok, nil
}

// Release gives up the dispatch lock (on shutdown), so another process can take over at once.
func (o *Outbox) Release() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.conn != nil && o.leading {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, _ = o.conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, dispatchLockKey)
	}
	o.dropConnLocked()
}

// dropConnLocked closes the lock's connection for good rather than handing
// it back to the pool: a pooled session could still hold the lock (if the
// unlock failed) and stop every process from ever leading again.
func (o *Outbox) dropConnLocked() {
	if o.conn != nil {
		_ = o.conn.Raw(func(any) error { return driver.ErrBadConn })
		_ = o.conn.Close()
	}
	o.conn, o.leading = nil, false
}

// Pending returns up to limit deliveries not yet accepted by Pusher nor
// parked, oldest first. A room's deliveries are in seq order, because a room's
// projections commit one after another under its row lock.
func (o *Outbox) Pending(ctx context.Context, limit int) ([]domain.Delivery, error) {
	return o.PendingExcept(ctx, limit, nil, nil)
}

// pendingColumns are the columns a read of the outbox scans (see scanPending).
// Columns scanned by hand rather than into DeliveryRow: GORM's reflection and
// a text[] parser per row were most of the dispatcher's CPU. A row's
// channels come newline-joined (channel names never hold one).
const pendingColumns = `d.id, d.event_id, d.room_id, d.seq, array_to_string(d.channels, E'\n'), d.name, d.data, d.socket_id, d.truncated, d.attempts, d.created_at`

// PendingExcept is Pending without the deliveries whose ids are in exclude
// (those the dispatcher already holds) and those of the rooms in skipRooms
// (rooms the dispatcher reads on their own, see PendingInRooms).
func (o *Outbox) PendingExcept(ctx context.Context, limit int, exclude []int64, skipRooms []string) ([]domain.Delivery, error) {
	q := `SELECT ` + pendingColumns + ` FROM deliveries AS d WHERE d.delivered_at IS NULL AND d.parked_at IS NULL`
	args := []any{}
	if len(exclude) > 0 {
		q += ` AND d.id <> ALL(?::bigint[])` // hashed by Postgres 15+
		args = append(args, arr(exclude))
	}
	if len(skipRooms) > 0 {
		// Notifications have no room; room ids are never empty.
		q += ` AND coalesce(d.room_id, '') <> ALL(?::text[])`
		args = append(args, arr(skipRooms))
	}
	q += ` ORDER BY d.id LIMIT ?`
	args = append(args, limit)
	return o.scanPending(ctx, q, args...)
}

// pendingInRoomsSQL reads, for each room, the next of its pending deliveries
// after an id, in id order: through the pending index from that id on (no
// index leads with room_id; a room read on its own is one whose deliveries
// crowd the outbox, so the scan finds them close together).
// TestOutboxStatementsProbeThePrimaryKey holds its plan.
const pendingInRoomsSQL = `SELECT ` + pendingColumns + `
	FROM unnest(?::text[], ?::bigint[], ?::int[]) AS r(room_id, after, n)
	CROSS JOIN LATERAL (SELECT * FROM deliveries AS p
		WHERE p.room_id = r.room_id AND p.id > r.after AND p.delivered_at IS NULL AND p.parked_at IS NULL
		ORDER BY p.id LIMIT r.n) AS d`

// PendingInRooms returns, for each rooms[i], up to limits[i] of its pending
// deliveries whose ids are above after[i], each room's in id order (its seq
// order). The dispatcher reads a room whose deliveries fill its share of
// memory this way, while reads of the whole outbox skip it.
func (o *Outbox) PendingInRooms(ctx context.Context, rooms []string, after []int64, limits []int) ([]domain.Delivery, error) {
	if len(rooms) == 0 {
		return nil, nil
	}
	if len(after) != len(rooms) || len(limits) != len(rooms) {
		return nil, fmt.Errorf("read pending deliveries of rooms: %d rooms, %d ids, %d limits", len(rooms), len(after), len(limits))
	}
	n := make([]int32, len(limits))
	for i, l := range limits {
		n[i] = int32(min(max(l, 0), 1<<30))
	}
	return o.scanPending(ctx, pendingInRoomsSQL, arr(rooms), arr(after), arr(n))
}

// scanPending runs a read of pendingColumns.
func (o *Outbox) scanPending(ctx context.Context, q string, args ...any) ([]domain.Delivery, error) {
	rows, err := o.db.WithContext(ctx).Raw(q, args...).Rows()
	if err != nil {
		return nil, fmt.Errorf("read pending deliveries: %w", err)
	}
	defer func() { _ = rows.Close() }()
	// Grown as rows come rather than sized to limit: most reads return far
	// fewer rows than they may, and a Delivery is ~200 bytes (sizing every
	// read to the limit was an eighth of roomcast's allocations under load).
	var out []domain.Delivery
	for rows.Next() {
		var d domain.Delivery
		var room, socket sql.NullString
		var seq sql.NullInt64
		var channels string
		if err := rows.Scan(&d.ID, &d.EventID, &room, &seq, &channels, &d.Name, &d.Data, &socket, &d.Truncated, &d.Attempts, &d.CreatedAt); err != nil {
			return nil, fmt.Errorf("read pending deliveries: %w", err)
		}
		d.RoomID, d.Seq, d.SocketID = room.String, seq.Int64, socket.String
		if channels != "" {
			d.Channels = strings.Split(channels, "\n")
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read pending deliveries: %w", err)
	}
	return out, nil
}

// The statements that change deliveries by id. None of them says "delivered_at
// IS NULL" in its WHERE clause, though each acts only on undelivered rows:
// that condition matched the partial index deliveries_undelivered_event
// (dropped since, migration 00007; a future partial index on that condition
// would bring the trap back), and while the table's statistics are missing or stale (it churns faster than
// autoanalyze runs, and without statistics "IS NULL" is guessed to match 0.5%
// of rows) the planner read that whole index, dead entries and all, and
// hash-joined the ids: ~15 ms a call under load, a quarter of Postgres's
// statement time, where one primary-key probe per id takes ~1 µs. The
// condition is applied in the SET clause instead (or, for a delete, not at
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

// OutboxChannel is the Postgres notification channel on which commits that
// add deliveries are announced (see Notify).
const OutboxChannel = "roomcast_outbox"

// Leading reports whether this process held the dispatch lock at its last check.
func (o *Outbox) Leading() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.leading
}

// Notify announces on OutboxChannel that deliveries were committed, waking
// the dispatcher of whichever process leads. It is a transaction of its own,
// after the projection's commit: a notifying transaction takes a global lock
// at commit, which must not be held through the projection's WAL flush.
func (o *Outbox) Notify(ctx context.Context) error {
	if err := o.db.WithContext(ctx).Exec(`SELECT pg_notify(?, '')`, OutboxChannel).Error; err != nil {
		return fmt.Errorf("notify %s: %w", OutboxChannel, err)
	}
	return nil
}

// Listen calls wake once at start and then whenever any process commits
// deliveries to this database's outbox, until ctx ends. It reconnects after
// a lost connection (calling wake again, since notifications may have been
// missed) and returns nil when ctx ends. onError, if set, hears of each lost
// connection.
func (o *Outbox) Listen(ctx context.Context, wake func(), onError func(error)) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := o.listenOnce(ctx, wake)
		if ctx.Err() != nil {
			break
		}
		if onError != nil {
			onError(err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		backoff = min(2*backoff, 5*time.Second)
	}
	return nil
}

func (o *Outbox) listenOnce(ctx context.Context, wake func()) error {
	sqlDB, err := o.db.DB()
	if err != nil {
		return err
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return fmt.Errorf("listen %s: %w", OutboxChannel, err)
	}
	defer func() {
		// A LISTENing session must not go back to the pool.
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		_ = conn.Close()
	}()
	return conn.Raw(func(driverConn any) error {
		sc, ok := driverConn.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("listen %s: driver connection is %T, not pgx", OutboxChannel, driverConn)
		}
		pc := sc.Conn()
		if _, err := pc.Exec(ctx, "LISTEN "+OutboxChannel); err != nil {
			return fmt.Errorf("listen %s: %w", OutboxChannel, err)
		}
		wake() // anything committed before LISTEN took effect
		for {
			if _, err := pc.WaitForNotification(ctx); err != nil {
				return fmt.Errorf("listen %s: %w", OutboxChannel, err)
			}
			wake()
		}
	})
}
