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
