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
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"github.com/roomcast/roomcast/domain"
)

// Outcome says what projecting one event did.
type Outcome int

// The outcomes of Project.
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

// Projector projects events into Postgres, each in one transaction.
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

// Project records env and applies it to the read models in one transaction.
// An event whose id is already stored changes nothing (Duplicate or Conflict).
// An edit or delete of a message that does not exist returns an error wrapping
// domain.ErrUnknownMessage and records nothing, so the event can be re-driven
// once the message exists. An event Postgres refuses (see classify: a data
// exception or program limit at once, another server error an event may
// cause after attemptsAlone tries) returns an error wrapping
// domain.ErrUnstorable and records nothing. Any other error is transient:
// nothing was committed.
func (p *Projector) Project(ctx context.Context, env domain.Envelope, src Origin) (Outcome, error) {
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
