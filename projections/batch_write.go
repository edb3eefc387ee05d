package projections

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"
)

// record inserts the events that stand, with their seq, in the order they
// applied: events.position is then each room's projection order, which a
// rebuild replays (several events of a room can share a batch). Concurrent
// batches with events of one room cannot overlap (the room's lock is taken
// first, in load); two that share notification ids (a rebalance) meet them
// in their partition's order.
func (b *batch) record(tx *gorm.DB) error {
	ids := slices.Sorted(maps.Keys(b.standing))
	slices.SortFunc(ids, func(x, y string) int { return cmp.Compare(b.standing[x], b.standing[y]) })
	if len(ids) == 0 {
		return nil
	}
	if b.copy == nil {
		return errors.New("record events: no COPY for this transaction")
	}
	// A plain insert (COPY): the ids were looked up in this transaction, so
	// one already stored can only be another transaction's that committed
	// since (two consumers during a rebalance), and then the copy fails on
	// the primary key (or waits for that transaction and then fails). ON
	// CONFLICT DO NOTHING would cost a speculative insertion for every row
	// to catch that rare case. Rows go in the order of ids (the batch's
	// order), and so get their positions in it.
	err := b.copy(tx.Statement.Context, "events",
		[]string{"id", "type", "source", "subject", "room_id", "seq", "data", "fingerprint", "occurred_at", "kafka_partition", "kafka_offset", "delivery_id"},
		func(w *copyWriter) {
			delivery := make(map[string]int64, len(b.owed))
			for _, d := range b.owed {
				if d.RoomID != "" && d.ID != 0 {
					delivery[d.EventID] = d.ID // a room event owes one delivery at most
				}
			}
			for _, id := range ids {
				i := b.standing[id]
				it := b.items[i]
				w.row()
				w.text(id)
				w.text(string(it.Env.Type))
				w.text(it.Env.Source)
				w.optText(it.Env.Subject)
				w.optText(eventRoom(it.Env.Event))
				if s, ok := b.seqOf[id]; ok {
					w.int8(s)
				} else {
					w.null()
				}
				w.jsonb(b.data[i])
				w.text(b.prints[i])
				w.timestamptz(occurredAt(it.Env, it.Origin))
				if it.Origin.Partition >= 0 {
					w.int4(it.Origin.Partition)
					w.int8(it.Origin.Offset)
				} else {
					w.null()
					w.null()
				}
				if d, ok := delivery[id]; ok {
					w.int8(d)
				} else {
					w.null()
				}
			}
		})
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "23505" /* unique_violation */ && pgErr.ConstraintName == "events_pkey" {
		return errClaimedMeanwhile
	}
	if err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	return nil
}

// write applies the batch's net effect with one statement per kind of change.
func (b *batch) write(tx *gorm.DB) error {
	exec := func(what, q string, args ...any) error {
		if err := tx.Exec(q, args...).Error; err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	if !b.readModelsOnly && !b.silent && len(b.owed) > 0 {
		// Ids first: a room event's row names its delivery.
		if err := reserveDeliveryIDs(tx, b.owed); err != nil {
			return err
		}
	}
	if b.readModelsOnly {
		// The events are not recorded again.
	} else if err := b.record(tx); err != nil {
		return err
	}
	// Messages: new ones inserted with their final state, existing ones
	// updated, each with the ids of this batch's events that carry its text
	// added to event_ids (first its create's, passed with the row, then the
	// others as (message, event) pairs); an existing message this batch
	// leaves unchanged gets its ids (repeated creates) appended on their own.
	var nID, nRoom, nAuthor, nName, nContent, nEvent []string
	var naID, naEvent, uaID, uaEvent, aID, aEvent []string
	var nSeq []int64
	var nAvatar, nEditBy, nDelBy []*string
	var nCreated []time.Time
	var nEdited, nDeleted []*time.Time
	var uID, uContent []string
	var uEditBy, uDelBy []*string
	var uEdited, uDeleted []*time.Time
	for _, id := range slices.Sorted(maps.Keys(b.msgs)) {
		m := b.msgs[id]
		switch {
		case m.changed && m.existed:
			for _, e := range m.eventIDs {
				uaID, uaEvent = append(uaID, id), append(uaEvent, e)
			}
		case m.changed && b.copy == nil: // new, inserted: the first id, its create's, goes in with the row
			for _, e := range m.eventIDs[1:] {
				naID, naEvent = append(naID, id), append(naEvent, e)
			}
		case m.changed: // new, copied with its whole list
		default:
			for _, e := range m.eventIDs {
				aID, aEvent = append(aID, id), append(aEvent, e)
			}
			continue
		}
		if !m.existed {
			if nID = append(nID, id); b.copy != nil {
				continue // the COPY reads the rest from b.msgs
			}
			nRoom, nSeq, nAuthor, nName = append(nRoom, m.room), append(nSeq, m.seq), append(nAuthor, m.authorID), append(nName, m.authorName)
			nAvatar, nContent, nCreated = append(nAvatar, m.authorAvatar), append(nContent, m.content), append(nCreated, m.createdAt)
			nEdited, nEditBy, nDeleted, nDelBy = append(nEdited, m.editedAt), append(nEditBy, m.editBy), append(nDeleted, m.deletedAt), append(nDelBy, m.deletedBy)
			nEvent = append(nEvent, m.eventIDs[0])
			continue
		}
		uID, uContent, uEdited, uEditBy = append(uID, id), append(uContent, m.content), append(uEdited, m.editedAt), append(uEditBy, m.editBy)
		uDeleted, uDelBy = append(uDeleted, m.deletedAt), append(uDelBy, m.deletedBy)
	}
	switch {
	case len(nID) == 0:
	case b.copy != nil:
		err := b.copy(tx.Statement.Context, "messages",
			[]string{"id", "room_id", "seq", "author_id", "author_name", "author_avatar", "content", "created_at", "edited_at", "edited_by", "deleted_at", "deleted_by", "event_ids"},
			func(w *copyWriter) {
				for _, id := range nID {
					m := b.msgs[id]
					w.row()
					w.text(id)
					w.text(m.room)
					w.int8(m.seq)
					w.text(m.authorID)
					w.text(m.authorName)
					w.textPtr(m.authorAvatar)
					w.text(m.content)
					w.timestamptz(m.createdAt)
					w.timePtr(m.editedAt)
					w.textPtr(m.editBy)
					w.timePtr(m.deletedAt)
					w.textPtr(m.deletedBy)
					w.textArray(m.eventIDs)
				}
			})
		if pgErr := (*pgconn.PgError)(nil); b.optimistic && errors.As(err, &pgErr) && pgErr.Code == "23505" /* unique_violation */ && pgErr.ConstraintName == "messages_pkey" {
			return errMessageExists
		}
		if err != nil {
			return fmt.Errorf("insert messages: %w", err)
		}
	default: // rebuilds, which have no COPY: one multi-row insert
		if err := exec("insert messages", `INSERT INTO messages (id, room_id, seq, author_id, author_name, author_avatar, content, created_at, edited_at, edited_by, deleted_at, deleted_by, event_ids)
			SELECT u.id, u.room_id, u.seq, u.author_id, u.author_name, u.author_avatar, u.content, u.created_at, u.edited_at, u.edited_by, u.deleted_at, u.deleted_by,
				ARRAY[u.event_id] || COALESCE(a.ids, '{}')
			FROM unnest(?::text[], ?::text[], ?::bigint[], ?::text[], ?::text[], ?::text[], ?::text[], ?::timestamptz[], ?::timestamptz[], ?::text[], ?::timestamptz[], ?::text[], ?::text[])
				AS u(id, room_id, seq, author_id, author_name, author_avatar, content, created_at, edited_at, edited_by, deleted_at, deleted_by, event_id)
			LEFT JOIN (SELECT x.id, array_agg(x.event_id ORDER BY x.n) AS ids
				FROM unnest(?::text[], ?::text[]) WITH ORDINALITY AS x(id, event_id, n) GROUP BY x.id) AS a ON a.id = u.id`,
			arr(nID), arr(nRoom), arr(nSeq), arr(nAuthor), arr(nName), arr(nAvatar), arr(nContent),
			arr(nCreated), arr(nEdited), arr(nEditBy), arr(nDeleted), arr(nDelBy), arr(nEvent), arr(naID), arr(naEvent)); err != nil {
			return err
		}
	}
	if len(uID) > 0 {
		// COALESCE keeps what this batch did not change (an edit leaves deleted_at, a delete leaves edited_at).
		if err := exec("update messages", `UPDATE messages AS m SET content = u.content,
				edited_at = COALESCE(u.edited_at, m.edited_at), edited_by = COALESCE(u.edited_by, m.edited_by),
				deleted_at = COALESCE(u.deleted_at, m.deleted_at), deleted_by = COALESCE(u.deleted_by, m.deleted_by),
				event_ids = m.event_ids || COALESCE(a.ids, '{}')
			FROM unnest(?::text[], ?::text[], ?::timestamptz[], ?::text[], ?::timestamptz[], ?::text[]) AS u(id, content, edited_at, edited_by, deleted_at, deleted_by)
			LEFT JOIN (SELECT x.id, array_agg(x.event_id ORDER BY x.n) AS ids
				FROM unnest(?::text[], ?::text[]) WITH ORDINALITY AS x(id, event_id, n) GROUP BY x.id) AS a ON a.id = u.id
			WHERE m.id = u.id`,
			arr(uID), arr(uContent), arr(uEdited), arr(uEditBy), arr(uDeleted), arr(uDelBy), arr(uaID), arr(uaEvent)); err != nil {
			return err
		}
	}
	if len(aID) > 0 {
		if err := exec("list message events", `UPDATE messages AS m SET event_ids = m.event_ids || a.ids
			FROM (SELECT u.id, array_agg(u.event_id ORDER BY u.n) AS ids
				FROM unnest(?::text[], ?::text[]) WITH ORDINALITY AS u(id, event_id, n) GROUP BY u.id) AS a
			WHERE m.id = a.id`, arr(aID), arr(aEvent)); err != nil {
			return err
		}
	}
	// Members: rows that left (or were replaced) deleted, rows present at the end inserted.
	var dRoom, dUser, iRoom, iUser, iName []string
	var iAvatar []*string
	var iJoined []time.Time
	for _, k := range sortedMemberKeys(b.members) {
		m := b.members[k]
		if !m.changed {
			continue
		}
		if m.existed {
			dRoom, dUser = append(dRoom, k[0]), append(dUser, k[1])
		}
		if m.present {
			iRoom, iUser, iName, iAvatar, iJoined = append(iRoom, k[0]), append(iUser, k[1]), append(iName, m.name), append(iAvatar, m.avatar), append(iJoined, m.joinedAt)
		}
	}
	if len(dRoom) > 0 {
		if err := exec("delete members", `DELETE FROM room_members m USING unnest(?::text[], ?::text[]) AS u(room_id, user_id)
			WHERE m.room_id = u.room_id AND m.user_id = u.user_id`, arr(dRoom), arr(dUser)); err != nil {
			return err
		}
	}
	if len(iRoom) > 0 {
		if err := exec("insert members", `INSERT INTO room_members (room_id, user_id, user_name, user_avatar, joined_at)
			SELECT * FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::timestamptz[])`,
			arr(iRoom), arr(iUser), arr(iName), arr(iAvatar), arr(iJoined)); err != nil {
			return err
		}
	}
	// Seqs: the rooms' last seq and each applied event's seq.
	if len(b.seqOf) > 0 {
		var rooms []string
		var last []int64
		for _, r := range slices.Sorted(maps.Keys(b.rooms)) {
			rooms, last = append(rooms, r), append(last, b.rooms[r])
		}
		if err := exec("advance room seqs", `UPDATE rooms AS r SET last_seq = u.last_seq, updated_at = now()
			FROM unnest(?::text[], ?::bigint[]) AS u(room_id, last_seq) WHERE r.room_id = u.room_id AND r.last_seq <> u.last_seq`,
			arr(rooms), arr(last)); err != nil {
			return err
		}
	}
	if b.readModelsOnly {
		return nil
	}
	if len(b.redactOwn) > 0 {
		if err := exec("redact events", `UPDATE events SET data = jsonb_set(data, '{content}', '""') WHERE id = ANY(?::text[])`, arr(b.redactOwn)); err != nil {
			return err
		}
	}
	if !b.silent && len(b.owed) > 0 {
		if err := copyDeliveries(tx.Statement.Context, b.copy, b.owed); err != nil {
			return err
		}
	}
	if len(b.deletedM) > 0 {
		// The deleted messages' event_ids are complete by now: the events
		// before this batch, and this batch's (recorded and appended above).
		if err := exec("redact events", `UPDATE events AS e SET data = jsonb_set(e.data, '{content}', '""')
			FROM (SELECT unnest(m.event_ids) AS id FROM messages m WHERE m.id = ANY(?::text[])) AS x
			WHERE e.id = x.id`, arr(b.deletedM)); err != nil {
			return err
		}
		if err := redactPendingDeliveries(tx, b.deletedM); err != nil {
			return err
		}
	}
	return nil
}

func sortedMemberKeys(m map[[2]string]*memberState) [][2]string {
	keys := make([][2]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]string) int {
		if c := strings.Compare(a[0], b[0]); c != 0 {
			return c
		}
		return strings.Compare(a[1], b[1])
	})
	return keys
}
