package projections

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"github.com/roomcast/roomcast/domain"
)

// Outcome says what projecting one event did.
type Outcome int

// The outcomes of projecting an event (Result.Outcome).
const (
	// Applied: the event changed the read models; a room event got its seq and
	// the deliveries it owes are in the outbox.
	Applied Outcome = iota + 1
	// Unchanged: the event is recorded but changes nothing (a second create,
	// an edit of a deleted message, a second join...): no seq, no delivery.
	Unchanged
	// Duplicate: the id was seen before with the same payload; nothing was done.
	Duplicate
	// Conflict: the id was seen before with a different payload; the first
	// one stands, and the conflict is logged and counted.
	Conflict
)

// String names the outcome (used as a metric label).
func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case Unchanged:
		return "unchanged"
	case Duplicate:
		return "duplicate"
	case Conflict:
		return "conflict"
	}
	return "unknown"
}

// Origin is where an event was read from. Partition is -1 when it did not
// come from Kafka; Timestamp is the Kafka timestamp, used as occurred_at
// when the event has no CloudEvents time.
type Origin struct {
	Partition int32
	Offset    int64
	Timestamp time.Time
	// Redriven marks a dead letter sent back by `dlq redrive`: applied
	// only if not older than what it meets (see redrive.go).
	Redriven bool
}

// Projector projects batches of events into Postgres, each batch in one
// transaction (ProjectBatch).
type Projector struct {
	db      *gorm.DB
	log     *slog.Logger
	metrics *projectorMetrics
	owed    func()
	handoff func([]domain.Delivery) bool

	lookUpUntil atomic.Int64 // unix ns: until then batches look their ids up first (see lookUpAfterStored)
	lookUpFor   time.Duration
}

// NewProjector returns a Projector writing to db. Its metrics are registered
// on reg when reg is not nil.
func NewProjector(db *gorm.DB, log *slog.Logger, reg prometheus.Registerer) *Projector {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Projector{db: db, log: log, metrics: newProjectorMetrics(reg), lookUpFor: lookUpAfterStored}
}

// OnDeliveriesOwed sets f to be called after every commit that added
// deliveries to the outbox (the dispatcher's wake-up). f must not block.
func (p *Projector) OnDeliveriesOwed(f func()) { p.owed = f }

// HandOffDeliveries sets f to be given the deliveries a ProjectBatch
// committed (ids, payloads and all, each room's in seq order), right after
// the commit, so that the dispatcher need not read back what was just
// written. When f returns true it took them and the OnDeliveriesOwed hook is
// not called; when it returns false, or a batch's deliveries cannot be
// handed over as written (a delete in the batch redacted some of them in
// Postgres), the hook is called as without f. f must not block.
func (p *Projector) HandOffDeliveries(f func([]domain.Delivery) bool) { p.handoff = f }

// redactPendingDeliveries blanks the text of the deliveries Pusher has not
// accepted yet of the listed messages' events: from each message's event_ids
// to the events' delivery_id, by primary-key probes only (a lateral subquery
// with LIMIT is never turned into a scan), then the deliveries by primary key
// (TestOutboxStatementsProbeThePrimaryKey holds redactDeliveriesSQL to it).
func redactPendingDeliveries(tx *gorm.DB, messageIDs []string) error {
	var ids []int64
	if err := scanRaw(tx.Raw(`SELECT e.delivery_id FROM unnest(?::text[]) AS mid(id)
		CROSS JOIN LATERAL (SELECT event_ids FROM messages WHERE id = mid.id LIMIT 1) AS m
		CROSS JOIN LATERAL unnest(m.event_ids) AS x(id)
		CROSS JOIN LATERAL (SELECT delivery_id FROM events WHERE id = x.id LIMIT 1) AS e
		WHERE e.delivery_id IS NOT NULL`, arr(messageIDs)), &ids); err != nil {
		return fmt.Errorf("find pending deliveries to redact: %w", err)
	}
	if len(ids) == 0 {
		return nil
	}
	if err := tx.Exec(redactDeliveriesSQL, arr(ids)).Error; err != nil {
		return fmt.Errorf("redact pending deliveries: %w", err)
	}
	return nil
}

// redactDeliveriesSQL blanks the text of the deliveries with these ids that
// Pusher has not accepted yet (a truncated one's flag goes too).
const redactDeliveriesSQL = `UPDATE deliveries AS d SET data = ((d.data::jsonb || '{"content": ""}') - 'truncated')::text
	FROM unnest(?::bigint[]) AS u(id) WHERE d.id = u.id AND d.delivered_at IS NULL`

const tooLargeReason = "payload exceeds Pusher's 10 KB data limit even with its text emptied"

// reserveDeliveryIDs gives each of ds an id from the outbox's sequence, in
// order. The sequence steps by a block (1000, migration 00006) and each
// nextval returns the first id of a block reserved for its caller alone, so
// a batch takes ceil(n / block) of them. A batch calls it once its rooms are
// locked, so a room's deliveries get rising ids in commit order, as inserted
// ones do. With a step of 1 (an older schema) it takes one value per row.
func reserveDeliveryIDs(tx *gorm.DB, ds []domain.Delivery) error {
	rows, err := tx.Raw(`SELECT nextval(s.seqrelid), s.seqincrement
		FROM pg_sequence AS s, generate_series(1, ceil(?::numeric / greatest(s.seqincrement, 1))::int)
		WHERE s.seqrelid = pg_get_serial_sequence('deliveries', 'id')::regclass`, len(ds)).Rows()
	if err != nil {
		return fmt.Errorf("reserve delivery ids: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var blocks [][2]int64
	for rows.Next() {
		var first, step int64
		if err := rows.Scan(&first, &step); err != nil {
			return fmt.Errorf("reserve delivery ids: %w", err)
		}
		blocks = append(blocks, [2]int64{first, max(step, 1)})
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reserve delivery ids: %w", err)
	}
	slices.SortFunc(blocks, func(a, b [2]int64) int { return cmp.Compare(a[0], b[0]) })
	i := 0
	for _, blk := range blocks {
		for id := blk[0]; id < blk[0]+blk[1] && i < len(ds); id++ {
			ds[i].ID = id
			i++
		}
	}
	if i < len(ds) {
		return fmt.Errorf("reserve delivery ids: %d of %d reserved", i, len(ds))
	}
	return nil
}

// copyDeliveries writes a batch's deliveries with COPY (see transaction).
func copyDeliveries(ctx context.Context, cp copyFunc, ds []domain.Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	if cp == nil {
		return errors.New("insert deliveries: no COPY for this transaction")
	}
	now := time.Now().UTC()
	err := cp(ctx, "deliveries",
		[]string{"id", "event_id", "room_id", "seq", "channels", "name", "data", "socket_id", "truncated", "parked_at", "parked_reason"},
		func(w *copyWriter) {
			for i := range ds {
				d := &ds[i]
				w.row()
				w.int8(d.ID)
				w.text(d.EventID)
				w.optText(d.RoomID)
				if d.Seq > 0 {
					w.int8(d.Seq)
				} else {
					w.null()
				}
				w.textArray(d.Channels)
				w.text(d.Name)
				w.text(d.Data)
				w.optText(d.SocketID)
				w.bool(d.Truncated)
				if d.TooLarge {
					w.timestamptz(now)
					w.text(tooLargeReason)
				} else {
					w.null()
					w.null()
				}
			}
		})
	if err != nil {
		return fmt.Errorf("insert deliveries: %w", err)
	}
	return nil
}

// canonicalData returns the event's data as stored (keys sorted, numbers
// kept exactly, no HTML escaping) and its fingerprint.
func canonicalData(env domain.Envelope) (string, string, error) {
	data, err := domain.CanonicalJSON(env.Data)
	if err != nil {
		return "", "", fmt.Errorf("%w: data: %v", domain.ErrInvalidEvent, err)
	}
	h := sha256.New()
	h.Write([]byte(env.Type))
	h.Write([]byte{'\n'})
	h.Write(data)
	var sum [sha256.Size]byte
	return string(data), hex.EncodeToString(h.Sum(sum[:0])), nil
}

// occurredAt is an event's occurred_at: its CloudEvents time, else the Kafka
// timestamp, else now.
func occurredAt(env domain.Envelope, src Origin) time.Time {
	for _, t := range []time.Time{env.Time, src.Timestamp} {
		if !t.IsZero() {
			return t.UTC()
		}
	}
	return time.Now().UTC()
}

// eventRoom is the events.room_id of an event: its room, the first room of a
// rooms notification, "" for a user notification.
func eventRoom(e domain.Event) string {
	switch e := e.(type) {
	case domain.RoomEvent:
		return e.Room()
	case domain.RoomsNotification:
		return domain.PartitionKey(e)
	}
	return ""
}
