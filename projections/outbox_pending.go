package projections

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/roomcast/roomcast/domain"
)

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
	// fewer rows than they may, and a Delivery is ~200 bytes.
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
