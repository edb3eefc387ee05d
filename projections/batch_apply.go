package projections

import (
	"errors"
	"fmt"

	"github.com/roomcast/roomcast/domain"
)

// apply applies one claimed item to the in-memory state, as projecting it
// alone would.
func (b *batch) apply(i int, env domain.Envelope) error {
	res := &b.results[i]
	switch e := env.Event.(type) {
	case domain.UserNotification, domain.RoomsNotification:
		if b.readModelsOnly {
			res.Outcome = Applied
			return nil
		}
		ds, err := domain.NotificationDeliveries(env)
		if err != nil {
			return err
		}
		b.owed = append(b.owed, ds...)
		res.Outcome = Applied
		return nil
	case domain.RoomEvent:
		if b.staleRedrive(i, e) { // see redrive.go
			res.Outcome = Unchanged
			return nil
		}
		changed, err := b.applyRoom(env, e)
		if err != nil {
			if errors.Is(err, domain.ErrUnknownMessage) {
				res.Err = err
				return nil
			}
			return err
		}
		if !changed {
			res.Outcome = Unchanged
			return nil
		}
		seq := b.rooms[e.Room()] + 1
		b.rooms[e.Room()] = seq
		b.seqOf[env.ID] = seq
		if m, ok := e.(domain.MessageCreated); ok {
			b.msgs[m.MessageID].seq = seq
		}
		if b.readModelsOnly {
			res.Outcome = Applied
			return nil
		}
		d, err := domain.RoomDelivery(env, seq)
		if err != nil {
			return err
		}
		b.owed = append(b.owed, d)
		b.oweTermination(env) // member.left: see terminate.go
		res.Outcome = Applied
		return nil
	}
	return fmt.Errorf("project %s: unsupported event %T", env.Type, env.Event)
}

func (b *batch) applyRoom(env domain.Envelope, e domain.RoomEvent) (bool, error) {
	switch e := e.(type) {
	case domain.MessageCreated:
		if m := b.msgs[e.MessageID]; m != nil && m.exists {
			switch {
			case m.deleted:
				b.redactOwn = append(b.redactOwn, env.ID)
			case m.room == e.RoomID:
				m.eventIDs = append(m.eventIDs, env.ID) // its text goes when the message is deleted
			}
			return false, nil
		}
		b.msgs[e.MessageID] = &msgState{room: e.RoomID, exists: true, changed: true, authorID: e.AuthorID,
			authorName: e.AuthorName, authorAvatar: e.AuthorAvatar, content: e.Content, createdAt: e.CreatedAt.UTC(),
			eventIDs: []string{env.ID}}
		return true, nil
	case domain.MessageEdited:
		m := b.msgs[e.MessageID]
		if m == nil || !m.exists || m.room != e.RoomID {
			return false, fmt.Errorf("message %q in room %q: %w", e.MessageID, e.RoomID, domain.ErrUnknownMessage)
		}
		if m.deleted {
			b.redactOwn = append(b.redactOwn, env.ID)
			return false, nil
		}
		at, by := e.EditedAt.UTC(), e.EditorID
		m.content, m.editedAt, m.editBy, m.changed = e.Content, &at, &by, true
		m.eventIDs = append(m.eventIDs, env.ID)
		return true, nil
	case domain.MessageDeleted:
		m := b.msgs[e.MessageID]
		if m == nil || !m.exists || m.room != e.RoomID {
			return false, fmt.Errorf("message %q in room %q: %w", e.MessageID, e.RoomID, domain.ErrUnknownMessage)
		}
		if m.deleted {
			return false, nil
		}
		at, by := e.DeletedAt.UTC(), e.DeletedBy
		m.content, m.deletedAt, m.deletedBy, m.deleted, m.changed = "", &at, &by, true, true
		b.deletedM = append(b.deletedM, e.MessageID)
		if err := b.redactOwed(m.eventIDs); err != nil {
			return false, err
		}
		return true, nil
	case domain.MemberJoined:
		k := [2]string{e.RoomID, e.UserID}
		m := b.members[k]
		if m == nil {
			m = &memberState{}
			b.members[k] = m
		}
		if m.present {
			return false, nil
		}
		m.present, m.changed, m.name, m.avatar, m.joinedAt = true, true, e.UserName, e.UserAvatar, e.JoinedAt.UTC()
		return true, nil
	case domain.MemberLeft:
		k := [2]string{e.RoomID, e.UserID}
		m := b.members[k]
		if m == nil || !m.present {
			return false, nil
		}
		m.present, m.changed = false, true
		return true, nil
	}
	return false, fmt.Errorf("unsupported room event %T", e)
}
