package projections

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/roomcast/roomcast/domain"
)

// FeedEntry is one event of a room's feed: the Pusher event its delivery
// carried and its payload, byte for byte as Pusher was sent it, with the
// redaction of a later delete of its message applied.
type FeedEntry struct {
	Seq   int64
	Event string // the Pusher event name: new-message, message-edited, ...
	Data  string // the JSON payload
}

// RoomFeed returns up to limit of roomID's events after seq afterSeq, in seq
// order (the events clients receive on the room's channel: those that got a
// seq), with the room's last seq and whether more follow the page. Rooms
// notifications have no seq and are not in the feed. An unknown room has an
// empty feed and last seq 0. One statement reads the page, through the index
// events_room_seq (TestRoomFeedReadsThroughTheRoomSeqIndex).
func RoomFeed(ctx context.Context, db *gorm.DB, roomID string, afterSeq int64, limit int) (entries []FeedEntry, lastSeq int64, more bool, err error) {
	page, err := ReadFeed(ctx, db, roomID, FeedRange{AfterSeq: afterSeq, Limit: limit})
	if err != nil {
		return nil, 0, false, err
	}
	entries = make([]FeedEntry, len(page.Deliveries))
	for i, d := range page.Deliveries {
		entries[i] = FeedEntry{Seq: d.Seq, Event: d.Name, Data: d.Data}
	}
	return entries, page.LastSeq, page.More, nil
}

// FeedRange selects a page of a room's feed.
type FeedRange struct {
	AfterSeq int64 // events with a seq above it
	Limit    int   // at most this many (positive)
	// Since and Until, when set, keep the events recorded at or after Since
	// and before Until (events.recorded_at).
	Since, Until time.Time
	// Owed also reports, per event, whether its delivery is still owed
	// (pending in the outbox): one more primary-key probe per event.
	Owed bool
}

// FeedPage is a page of a room's feed as the deliveries its events owed.
type FeedPage struct {
	// Deliveries are rebuilt from the stored events (room, seq, event id,
	// channel, name, payload, truncated), in seq order. SocketID is left
	// empty: a delivery rebuilt later goes to every connection.
	Deliveries []domain.Delivery
	// StillOwed, with FeedRange.Owed, says which deliveries the outbox
	// still holds pending (by index).
	StillOwed []bool
	LastSeq   int64 // the room's last seq (rooms.last_seq)
	More      bool  // more of the range follows the page
}

// ReadFeed reads a page of roomID's feed in one statement.
func ReadFeed(ctx context.Context, db *gorm.DB, roomID string, r FeedRange) (FeedPage, error) {
	if r.Limit <= 0 {
		return FeedPage{}, fmt.Errorf("read the feed of room %q: limit %d, want a positive one", roomID, r.Limit)
	}
	q, args := feedSQL(roomID, r)
	rows, err := db.WithContext(ctx).Raw(q, args...).Rows()
	if err != nil {
		return FeedPage{}, fmt.Errorf("read the feed of room %q: %w", roomID, err)
	}
	defer func() { _ = rows.Close() }()
	var page FeedPage
	for rows.Next() {
		var (
			last, seq         sql.NullInt64
			id, typ, source   sql.NullString
			subject           *string
			data              []byte
			redacted, deleted sql.NullBool
			owed              sql.NullBool
		)
		if err := rows.Scan(&last, &seq, &id, &typ, &source, &subject, &data, &redacted, &deleted, &owed); err != nil {
			return FeedPage{}, fmt.Errorf("read the feed of room %q: %w", roomID, err)
		}
		page.LastSeq = last.Int64
		if !seq.Valid {
			continue // no event after afterSeq: the one row says the room's last seq
		}
		if len(page.Deliveries) == r.Limit {
			page.More = true
			break
		}
		d, err := feedDelivery(id.String, typ.String, source.String, subject, data, seq.Int64, redacted.Bool || deleted.Bool)
		if err != nil {
			return FeedPage{}, fmt.Errorf("read the feed of room %q: %w", roomID, err)
		}
		page.Deliveries = append(page.Deliveries, d)
		if r.Owed {
			page.StillOwed = append(page.StillOwed, owed.Bool)
		}
	}
	if err := rows.Err(); err != nil {
		return FeedPage{}, fmt.Errorf("read the feed of room %q: %w", roomID, err)
	}
	return page, nil
}

// feedSQL is the statement of a page: the room's last seq joined with up
// to Limit+1 of its events (the one past the page says More), each with
// whether its message is deleted now, by primary-key probe (a lateral
// subquery with LIMIT is never turned into a scan). With no event in the
// range it still returns one row, with the room's last seq. Read in one
// statement, the page and the last seq are of one snapshot.
func feedSQL(roomID string, r FeedRange) (string, []any) {
	var b strings.Builder
	args := []any{roomID, r.AfterSeq}
	b.WriteString(`SELECT r.last_seq, e.seq, e.id, e.type, e.source, e.subject, e.data::text, e.redacted, m.deleted, `)
	if r.Owed {
		b.WriteString(`o.owed`)
	} else {
		b.WriteString(`NULL::boolean`)
	}
	b.WriteString(`
	FROM (SELECT ?::text AS room_id) AS q
	LEFT JOIN rooms AS r ON r.room_id = q.room_id
	LEFT JOIN LATERAL (SELECT seq, id, type, source, subject, data, delivery_id,
			coalesce(data ->> 'content' = '', false) AS redacted
		FROM events WHERE room_id = q.room_id AND seq > ?`)
	if !r.Since.IsZero() {
		b.WriteString(` AND recorded_at >= ?`)
		args = append(args, r.Since)
	}
	if !r.Until.IsZero() {
		b.WriteString(` AND recorded_at < ?`)
		args = append(args, r.Until)
	}
	b.WriteString(` ORDER BY seq LIMIT ?) AS e ON true
	LEFT JOIN LATERAL (SELECT deleted_at IS NOT NULL AS deleted FROM messages
		WHERE e.type IN ('chat.message.created', 'chat.message.edited') AND id = e.data ->> 'messageId' LIMIT 1) AS m ON true`)
	args = append(args, r.Limit+1)
	if r.Owed {
		b.WriteString(`
	LEFT JOIN LATERAL (SELECT true AS owed FROM deliveries
		WHERE id = e.delivery_id AND delivered_at IS NULL AND parked_at IS NULL LIMIT 1) AS o ON true`)
	}
	b.WriteString(`
	ORDER BY e.seq`)
	return b.String(), args
}

// feedDelivery rebuilds the delivery a stored room event owed when it got
// its seq, with the same code live projection ran (historyEnvelope, whose
// placeholder stands in for text a delete redacted, and
// domain.RoomDelivery), then, when its message is deleted or its stored
// text redacted, domain.RedactDelivery: the payload a delete leaves in the
// outbox, and what the event is once its text is gone.
func feedDelivery(id, typ, source string, subject *string, data []byte, seq int64, redact bool) (domain.Delivery, error) {
	env, err := historyEnvelope(id, typ, source, subject, data)
	if err != nil {
		return domain.Delivery{}, fmt.Errorf("event %s (seq %d) no longer decodes: %w", id, seq, err)
	}
	d, err := domain.RoomDelivery(env, seq)
	if err != nil {
		return domain.Delivery{}, err
	}
	if redact {
		if d, err = domain.RedactDelivery(d); err != nil {
			return domain.Delivery{}, err
		}
	}
	d.SocketID = ""
	return d, nil
}
