package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/roomcast/roomcast/domain"
)

// ProjectOneByOne is the reference that ProjectBatch is held to (see
// TestBatchesMatchOneByOneProjection): it projects one event in a
// transaction of its own, statement by statement, the way the rules read.
// Production never calls it; it lives in a test file so that the batch
// path has something plain to be compared with.
//
// It records env and applies it to the read models in one transaction.
// An event whose id is already stored changes nothing (Duplicate or Conflict).
// An edit or delete of a message that does not exist returns an error wrapping
// domain.ErrUnknownMessage and records nothing, so the event can be re-driven
// once the message exists. An event Postgres refuses (see classify: a data
// exception or program limit at once, another server error an event may
// cause after attemptsAlone tries) returns an error wrapping
// domain.ErrUnstorable and records nothing. Any other error is transient:
// nothing was committed.
func (p *Projector) ProjectOneByOne(ctx context.Context, env domain.Envelope, src Origin) (Outcome, error) {
	for n := 1; ; n++ {
		outcome, err := p.project(ctx, env, src)
		if err == nil || errors.Is(err, domain.ErrUnknownMessage) {
			return outcome, err
		}
		switch v, pgErr := classify(err); {
		case v == refused, v == suspect && n >= attemptsAlone:
			p.metrics.projected.WithLabelValues(string(env.Type), "unstorable").Inc()
			return 0, unstorable(pgErr)
		case v == transient:
			p.metrics.failures.WithLabelValues(string(env.Type)).Inc()
			return 0, err
		}
	}
}

func (p *Projector) project(ctx context.Context, env domain.Envelope, src Origin) (Outcome, error) {
	start := time.Now()
	data, fingerprint, err := canonicalData(env)
	if err != nil {
		return 0, err
	}
	occurred := occurredAt(env, src)
	var (
		outcome Outcome
		owed    []domain.Delivery
	)
	err = p.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		outcome, owed = 0, nil
		var position int64
		res := tx.Raw(`INSERT INTO events (id, type, source, subject, room_id, data, fingerprint, occurred_at, kafka_partition, kafka_offset)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING RETURNING position`,
			env.ID, string(env.Type), env.Source, nullString(env.Subject), nullString(eventRoom(env.Event)),
			data, fingerprint, occurred, nullPartition(src.Partition), nullOffset(src)).Scan(&position)
		if res.Error != nil {
			return fmt.Errorf("insert event: %w", res.Error)
		}
		if res.RowsAffected == 0 {
			var stored string
			if err := scanRaw(tx.Raw(`SELECT fingerprint FROM events WHERE id = ?`, env.ID), &stored); err != nil {
				return fmt.Errorf("read stored event: %w", err)
			}
			outcome = Duplicate
			if stored != fingerprint {
				outcome = Conflict
			}
			return nil
		}
		var err error
		switch e := env.Event.(type) {
		case domain.RoomEvent:
			outcome, owed, err = applyRoomEvent(tx, env, e)
		case domain.UserNotification, domain.RoomsNotification:
			outcome = Applied
			owed, err = domain.NotificationDeliveries(env)
		default:
			err = fmt.Errorf("project %s: unsupported event %T", env.Type, e)
		}
		if err != nil {
			return err
		}
		return insertDeliveries(tx, owed)
	})
	attrs := logAttrs(env.ID, string(env.Type), eventRoom(env.Event))
	if err != nil {
		if errors.Is(err, domain.ErrUnknownMessage) {
			p.metrics.projected.WithLabelValues(string(env.Type), "unknown_message").Inc()
			return 0, err
		}
		return 0, fmt.Errorf("project %s %s: %w", env.Type, env.ID, err)
	}
	p.metrics.projected.WithLabelValues(string(env.Type), outcome.String()).Inc()
	p.metrics.seconds.Observe(time.Since(start).Seconds())
	switch outcome {
	case Conflict:
		p.metrics.conflicts.WithLabelValues(string(env.Type)).Inc()
		p.log.Warn("event id reused with a different payload: the first one stands", attrs...)
	case Duplicate:
		p.log.Debug("duplicate event ignored", attrs...)
	}
	for _, d := range owed {
		if d.Truncated {
			p.metrics.truncated.WithLabelValues(d.Name).Inc()
		}
		if d.TooLarge {
			p.metrics.tooLarge.WithLabelValues(d.Name).Inc()
			p.log.Error("delivery exceeds Pusher's 10 KB even with its text emptied: parked, not sent", append(attrs, slog.String("event", d.Name))...)
		}
	}
	if len(owed) > 0 && p.owed != nil {
		p.owed()
	}
	return outcome, nil
}

// applyRoomEvent applies a room event under the room's row lock, which orders
// the room's projections, and assigns the next seq when it changes something.
func applyRoomEvent(tx *gorm.DB, env domain.Envelope, e domain.RoomEvent) (Outcome, []domain.Delivery, error) {
	room := e.Room()
	var lastSeq int64
	if err := scanRaw(tx.Raw(`INSERT INTO rooms (room_id) VALUES (?)
		ON CONFLICT (room_id) DO UPDATE SET room_id = EXCLUDED.room_id RETURNING last_seq`, room), &lastSeq); err != nil {
		return 0, nil, fmt.Errorf("lock room: %w", err)
	}
	seq := lastSeq + 1
	changed := false
	switch e := e.(type) {
	case domain.MessageCreated:
		res := tx.Exec(`INSERT INTO messages (id, room_id, seq, author_id, author_name, author_avatar, content, created_at, event_ids)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ARRAY[?::text]) ON CONFLICT (id) DO NOTHING`,
			e.MessageID, e.RoomID, seq, e.AuthorID, e.AuthorName, e.AuthorAvatar, e.Content, e.CreatedAt.UTC(), env.ID)
		if res.Error != nil {
			return 0, nil, fmt.Errorf("insert message: %w", res.Error)
		}
		changed = res.RowsAffected == 1
		if !changed {
			// A second create of a deleted message must not bring its text back
			// into the event store; one of a live message in its room loses its
			// text when the message is deleted.
			if err := tx.Exec(`UPDATE events SET data = jsonb_set(data, '{content}', '""') WHERE id = ?
				AND EXISTS (SELECT 1 FROM messages WHERE id = ? AND deleted_at IS NOT NULL)`, env.ID, e.MessageID).Error; err != nil {
				return 0, nil, fmt.Errorf("redact event: %w", err)
			}
			if err := tx.Exec(`UPDATE messages SET event_ids = event_ids || ?::text WHERE id = ? AND room_id = ? AND deleted_at IS NULL`,
				env.ID, e.MessageID, e.RoomID).Error; err != nil {
				return 0, nil, fmt.Errorf("list message event: %w", err)
			}
		}
	case domain.MessageEdited:
		deleted, err := lookupMessage(tx, e.RoomID, e.MessageID)
		if err != nil {
			return 0, nil, err
		}
		if deleted {
			if err := tx.Exec(`UPDATE events SET data = jsonb_set(data, '{content}', '""') WHERE id = ?`, env.ID).Error; err != nil {
				return 0, nil, fmt.Errorf("redact event: %w", err)
			}
			break
		}
		if err := tx.Exec(`UPDATE messages SET content = ?, edited_at = ?, edited_by = ?, event_ids = event_ids || ?::text WHERE id = ?`,
			e.Content, e.EditedAt.UTC(), e.EditorID, env.ID, e.MessageID).Error; err != nil {
			return 0, nil, fmt.Errorf("edit message: %w", err)
		}
		changed = true
	case domain.MessageDeleted:
		deleted, err := lookupMessage(tx, e.RoomID, e.MessageID)
		if err != nil {
			return 0, nil, err
		}
		if deleted {
			break
		}
		if err := redactMessage(tx, e); err != nil {
			return 0, nil, err
		}
		changed = true
	case domain.MemberJoined:
		res := tx.Exec(`INSERT INTO room_members (room_id, user_id, user_name, user_avatar, joined_at)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (room_id, user_id) DO NOTHING`,
			e.RoomID, e.UserID, e.UserName, e.UserAvatar, e.JoinedAt.UTC())
		if res.Error != nil {
			return 0, nil, fmt.Errorf("insert member: %w", res.Error)
		}
		changed = res.RowsAffected == 1
	case domain.MemberLeft:
		res := tx.Exec(`DELETE FROM room_members WHERE room_id = ? AND user_id = ?`, e.RoomID, e.UserID)
		if res.Error != nil {
			return 0, nil, fmt.Errorf("delete member: %w", res.Error)
		}
		changed = res.RowsAffected == 1
	default:
		return 0, nil, fmt.Errorf("unsupported room event %T", e)
	}
	if !changed {
		return Unchanged, nil, nil
	}
	if err := tx.Exec(`UPDATE rooms SET last_seq = ?, updated_at = now() WHERE room_id = ?`, seq, room).Error; err != nil {
		return 0, nil, fmt.Errorf("advance room seq: %w", err)
	}
	if err := tx.Exec(`UPDATE events SET seq = ? WHERE id = ?`, seq, env.ID).Error; err != nil {
		return 0, nil, fmt.Errorf("set event seq: %w", err)
	}
	d, err := domain.RoomDelivery(env, seq)
	if err != nil {
		return 0, nil, err
	}
	return Applied, []domain.Delivery{d}, nil
}

// lookupMessage reports whether the message exists in the room and is
// deleted; a message that does not exist (or lives in another room) is
// domain.ErrUnknownMessage.
func lookupMessage(tx *gorm.DB, roomID, messageID string) (deleted bool, err error) {
	var rows []struct {
		RoomID  string
		Deleted bool
	}
	if err := scanRaw(tx.Raw(`SELECT room_id, deleted_at IS NOT NULL AS deleted FROM messages WHERE id = ? FOR UPDATE`, messageID), &rows); err != nil {
		return false, fmt.Errorf("read message: %w", err)
	}
	if len(rows) == 0 || rows[0].RoomID != roomID {
		return false, fmt.Errorf("message %q in room %q: %w", messageID, roomID, domain.ErrUnknownMessage)
	}
	return rows[0].Deleted, nil
}

// redactMessage deletes a message: its row keeps the facts with empty content,
// its stored events lose their text, and deliveries of it that Pusher has not
// yet accepted are sent without the text.
func redactMessage(tx *gorm.DB, e domain.MessageDeleted) error {
	if err := tx.Exec(`UPDATE messages SET content = '', deleted_at = ?, deleted_by = ? WHERE id = ?`,
		e.DeletedAt.UTC(), e.DeletedBy, e.MessageID).Error; err != nil {
		return fmt.Errorf("delete message: %w", err)
	}
	if err := tx.Exec(`UPDATE events AS e SET data = jsonb_set(e.data, '{content}', '""')
		FROM (SELECT unnest(event_ids) AS id FROM messages WHERE id = ?) AS x WHERE e.id = x.id`,
		e.MessageID).Error; err != nil {
		return fmt.Errorf("redact events: %w", err)
	}
	return redactPendingDeliveries(tx, []string{e.MessageID})
}

func insertDeliveries(tx *gorm.DB, ds []domain.Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	// One array per column, whatever the number of rows: a few parameters
	// to encode and one statement to plan. A row's channels travel as one
	// newline-separated text (channel names never hold a newline).
	if err := reserveDeliveryIDs(tx, ds); err != nil {
		return err
	}
	n := len(ds)
	ids := make([]int64, n)
	eventIDs, names, data := make([]string, n), make([]string, n), make([]string, n)
	roomIDs, socketIDs, parkedReasons := make([]*string, n), make([]*string, n), make([]*string, n)
	seqs := make([]*int64, n)
	channels := make([]string, n)
	truncated := make([]bool, n)
	parkedAt := make([]*time.Time, n)
	now := time.Now().UTC()
	reason := tooLargeReason
	for i, d := range ds {
		ids[i], eventIDs[i], names[i], data[i], truncated[i] = d.ID, d.EventID, d.Name, d.Data, d.Truncated
		channels[i] = strings.Join(d.Channels, "\n")
		if d.RoomID != "" {
			roomIDs[i] = &ds[i].RoomID
		}
		if d.SocketID != "" {
			socketIDs[i] = &ds[i].SocketID
		}
		if d.Seq > 0 {
			seqs[i] = &ds[i].Seq
		}
		if d.TooLarge {
			parkedAt[i], parkedReasons[i] = &now, &reason
		}
	}
	err := tx.Exec(`INSERT INTO deliveries (id, event_id, room_id, seq, channels, name, data, socket_id, truncated, parked_at, parked_reason)
		SELECT i, e, r, s, string_to_array(c, E'\n'), n, d, so, t, pa, pr
		FROM unnest(?::bigint[], ?::text[], ?::text[], ?::bigint[], ?::text[], ?::text[], ?::text[], ?::text[], ?::boolean[], ?::timestamptz[], ?::text[])
			AS u(i, e, r, s, c, n, d, so, t, pa, pr)`,
		arr(ids), arr(eventIDs), arr(roomIDs), arr(seqs), arr(channels), arr(names), arr(data), arr(socketIDs), arr(truncated), arr(parkedAt), arr(parkedReasons)).Error
	if err != nil {
		return fmt.Errorf("insert deliveries: %w", err)
	}
	// A room event names its delivery (what deleting its message redacts).
	for _, d := range ds {
		if d.RoomID != "" {
			if err := tx.Exec(`UPDATE events SET delivery_id = ? WHERE id = ?`, d.ID, d.EventID).Error; err != nil {
				return fmt.Errorf("link event to its delivery: %w", err)
			}
		}
	}
	// No NOTIFY here: Postgres serialises the commits of notifying
	// transactions behind one global lock held through the WAL flush, which
	// would stop concurrent batches from sharing a commit. Outbox.Notify
	// announces commits separately.
	return nil
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullPartition(p int32) any {
	if p < 0 {
		return nil
	}
	return p
}

func nullOffset(src Origin) any {
	if src.Partition < 0 {
		return nil
	}
	return src.Offset
}
