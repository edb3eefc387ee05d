package projections

import (
	"fmt"
	"maps"
	"slices"

	"gorm.io/gorm"

	"github.com/roomcast/roomcast/domain"
)

// lookupStored reads the fingerprints of the batch's ids that are already stored.
func (b *batch) lookupStored(tx *gorm.DB) error {
	seen := map[string]bool{}
	var ids []string
	for i, it := range b.items {
		if b.valid[i] && !seen[it.Env.ID] {
			seen[it.Env.ID] = true
			ids = append(ids, it.Env.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	var stored []struct{ ID, Fingerprint string }
	// One primary-key probe per id, whatever the statistics say: a lateral
	// subquery with LIMIT is never flattened into a hash or merge join. On
	// tables growing faster than autovacuum analyzes them the planner chose
	// to read all of the table for a batch's ids (id = ANY: a sequential
	// scan; a plain join with unnest: a hash or merge join over the whole
	// primary key), which grows with the table where probes do not.
	if err := scanRaw(tx.Raw(`SELECT e.id, e.fingerprint FROM unnest(?::text[]) AS u(id)
		CROSS JOIN LATERAL (SELECT id, fingerprint FROM events WHERE id = u.id LIMIT 1) e`, arr(ids)), &stored); err != nil {
		return fmt.Errorf("read stored events: %w", err)
	}
	for _, st := range stored {
		b.stored[st.ID] = st.Fingerprint
	}
	return nil
}

// load locks the batch's rooms (sorted) and reads the messages and
// memberships its events may touch: every item whose id is not stored yet.
func (b *batch) load(tx *gorm.DB) error {
	roomSet, msgSet := map[string]bool{}, map[string]bool{}
	var mRooms, mUsers []string
	for i, it := range b.items {
		if !b.valid[i] {
			continue
		}
		if _, stored := b.stored[it.Env.ID]; stored {
			continue
		}
		switch e := it.Env.Event.(type) {
		case domain.MessageCreated:
			// Optimistic: a created message is taken to be new (an edit
			// or delete of it in the batch still reads it), and one that
			// exists fails the copy into messages (errMessageExists).
			roomSet[e.RoomID], msgSet[e.MessageID] = true, msgSet[e.MessageID] || !b.optimistic
		case domain.MessageEdited:
			roomSet[e.RoomID], msgSet[e.MessageID] = true, true
		case domain.MessageDeleted:
			roomSet[e.RoomID], msgSet[e.MessageID] = true, true
		case domain.MemberJoined:
			roomSet[e.RoomID] = true
			mRooms, mUsers = append(mRooms, e.RoomID), append(mUsers, e.UserID)
		case domain.MemberLeft:
			roomSet[e.RoomID] = true
			mRooms, mUsers = append(mRooms, e.RoomID), append(mUsers, e.UserID)
		}
	}
	if len(roomSet) > 0 {
		rooms := slices.Sorted(maps.Keys(roomSet))
		var locked []struct {
			RoomID  string
			LastSeq int64
		}
		if err := scanRaw(tx.Raw(`INSERT INTO rooms (room_id) SELECT r FROM unnest(?::text[]) AS r ORDER BY r
			ON CONFLICT (room_id) DO UPDATE SET room_id = EXCLUDED.room_id RETURNING room_id, last_seq`, arr(rooms)), &locked); err != nil {
			return fmt.Errorf("lock rooms: %w", err)
		}
		for _, r := range locked {
			b.rooms[r.RoomID] = r.LastSeq
		}
	}
	for id, read := range msgSet {
		if !read {
			delete(msgSet, id)
		}
	}
	if len(msgSet) > 0 {
		var rows []struct {
			ID      string
			RoomID  string
			Deleted bool
		}
		// Probes by primary key (see lookupStored), locked in id order: the
		// ids are sorted and a subquery that locks is never flattened, so
		// the nested loop takes them in the array's order.
		if err := scanRaw(tx.Raw(`SELECT m.id, m.room_id, m.deleted FROM unnest(?::text[]) AS u(id)
			CROSS JOIN LATERAL (SELECT id, room_id, deleted_at IS NOT NULL AS deleted FROM messages WHERE id = u.id FOR UPDATE) m`,
			arr(slices.Sorted(maps.Keys(msgSet)))), &rows); err != nil {
			return fmt.Errorf("read messages: %w", err)
		}
		for _, r := range rows {
			b.msgs[r.ID] = &msgState{room: r.RoomID, existed: true, exists: true, deleted: r.Deleted, wasDeletedDB: r.Deleted}
		}
	}
	if len(mRooms) > 0 {
		var rows []struct{ RoomID, UserID string }
		if err := scanRaw(tx.Raw(`SELECT m.room_id, m.user_id FROM room_members m
			JOIN unnest(?::text[], ?::text[]) AS u(room_id, user_id) ON m.room_id = u.room_id AND m.user_id = u.user_id`,
			arr(mRooms), arr(mUsers)), &rows); err != nil {
			return fmt.Errorf("read members: %w", err)
		}
		for _, r := range rows {
			b.members[[2]string{r.RoomID, r.UserID}] = &memberState{existed: true, present: true}
		}
	}
	return nil
}
