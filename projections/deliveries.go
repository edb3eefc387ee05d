package projections

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"gorm.io/gorm"

	"github.com/roomcast/roomcast/domain"
)

// redactPendingDeliveries re-renders, without their text and marked
// redacted (domain.RedactDelivery), the deliveries Pusher has not accepted
// yet of the listed messages' events: one statement reads them, one writes
// them back, whatever the number of messages. Both find their rows by
// primary-key probes only (TestOutboxStatementsProbeThePrimaryKey).
// Rendering in Go, not with jsonb in SQL, keeps the one field order and
// compact formatting every payload has.
func redactPendingDeliveries(tx *gorm.DB, messageIDs []string) error {
	rows, err := tx.Raw(pendingToRedactSQL, arr(messageIDs)).Rows()
	if err != nil {
		return fmt.Errorf("read pending deliveries to redact: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var ids []int64
	var data []string
	for rows.Next() {
		var d domain.Delivery
		if err := rows.Scan(&d.ID, &d.EventID, &d.Name, &d.Data); err != nil {
			return fmt.Errorf("read pending deliveries to redact: %w", err)
		}
		r, err := domain.RedactDelivery(d)
		if err != nil {
			return err
		}
		if r.Data != d.Data { // one redacted already is not written again
			ids, data = append(ids, r.ID), append(data, r.Data)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read pending deliveries to redact: %w", err)
	}
	_ = rows.Close()
	if len(ids) == 0 {
		return nil
	}
	if err := tx.Exec(redactDeliveriesSQL, arr(ids), arr(data)).Error; err != nil {
		return fmt.Errorf("redact pending deliveries: %w", err)
	}
	return nil
}

// redactOwed redacts, in memory, the deliveries this batch owes for the
// events in eventIDs: those of a message that a delete later in the batch
// empties. They are then copied to the outbox as they are to be sent, and
// redactPendingDeliveries finds nothing left to write for them: a delete
// that comes with its message in one batch (a backlog, a replay) costs no
// second version of their rows.
func (b *batch) redactOwed(eventIDs []string) error {
	found := 0
	for i := len(b.owed) - 1; i >= 0 && found < len(eventIDs); i-- {
		if !slices.Contains(eventIDs, b.owed[i].EventID) {
			continue
		}
		found++
		r, err := domain.RedactDelivery(b.owed[i])
		if err != nil {
			return err
		}
		b.owed[i] = r
	}
	return nil
}

// pendingToRedactSQL reads the deliveries Pusher has not accepted yet of
// the events that carry the listed messages' text: from each message's
// event_ids to the events' delivery_id to the delivery, each step a lateral
// subquery with LIMIT, which the planner never turns into a scan (and
// "delivered_at IS NULL" stays outside it, see markDeliveredSQL).
const pendingToRedactSQL = `SELECT d.id, d.event_id, d.name, d.data FROM unnest(?::text[]) AS mid(id)
	CROSS JOIN LATERAL (SELECT event_ids FROM messages WHERE id = mid.id LIMIT 1) AS m
	CROSS JOIN LATERAL unnest(m.event_ids) AS x(id)
	CROSS JOIN LATERAL (SELECT delivery_id FROM events WHERE id = x.id LIMIT 1) AS e
	CROSS JOIN LATERAL (SELECT id, event_id, name, data, delivered_at FROM deliveries WHERE id = e.delivery_id LIMIT 1) AS d
	WHERE d.delivered_at IS NULL`

// redactDeliveriesSQL writes the redacted payloads of the deliveries with
// these ids, which are no longer truncated, unless Pusher accepted them
// since they were read (the condition in SET, see markDeliveredSQL).
const redactDeliveriesSQL = `UPDATE deliveries AS d
	SET data = CASE WHEN d.delivered_at IS NULL THEN u.data ELSE d.data END,
		truncated = CASE WHEN d.delivered_at IS NULL THEN false ELSE d.truncated END
	FROM unnest(?::bigint[], ?::text[]) AS u(id, data) WHERE d.id = u.id`

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
