package projections

import (
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/roomcast/roomcast/domain"
)

// A dead letter that `dlq redrive` sends back (Origin.Redriven) is applied
// out of its partition's order: an edit dead-lettered as an unknown message
// (it reached Kafka before its message) comes back after the message and,
// often, after newer edits that applied live. Applied as live edits are, in
// the order they arrive, it would put the older text back. So a re-driven
// edit applies only if it is not older than the message's current state:
// its editedAt is not before the message's edited_at, nor before its
// created_at. Otherwise it is recorded as unchanged (no seq, no delivery;
// its id joins the message's event_ids, so a delete still redacts its
// text). Live edits keep partition order, as the contract says.
//
// A rebuild replays stored events, which do not say whether they were
// re-driven. An edit recorded without a seq while its message existed and
// was not deleted can only be one that this rule kept from applying, so a
// rebuild marks the edits recorded without a seq as re-driven: the rule
// then decides as it did live, against the same state.
//
// Deletes need no such rule (a delete is final whenever it comes), nor
// creates (a second create changes nothing). Member events are never
// dead-lettered for their order (a join or leave always applies or is a
// no-op), but one dead-lettered for another reason (unstorable, a panic)
// and re-driven after later membership changes would apply out of order
// too; room_members keeps no time of leaving to compare with, so no rule
// guards them: re-drive those by -id after checking.

// staleRedrive says whether item i is a re-driven edit older than the
// state of its message (which then exists, in its room, not deleted), and
// if so lists it among the events carrying the message's text.
func (b *batch) staleRedrive(i int, e domain.RoomEvent) bool {
	edit, ok := e.(domain.MessageEdited)
	if !ok || !b.items[i].Origin.Redriven {
		return false
	}
	m := b.msgs[edit.MessageID]
	if m == nil || !m.exists || m.deleted || m.room != edit.RoomID {
		return false // unknown, deleted: as for any edit
	}
	at := edit.EditedAt.UTC()
	if !at.Before(m.createdAt) && (m.editedAt == nil || !at.Before(*m.editedAt)) {
		return false
	}
	m.eventIDs = append(m.eventIDs, b.items[i].Env.ID)
	return true
}

// loadRedriven reads the creation and last edit times of the existing
// messages that the batch's re-driven edits touch (load has locked them).
func (b *batch) loadRedriven(tx *gorm.DB) error {
	var ids []string
	seen := map[string]bool{}
	for i, it := range b.items {
		if e, ok := it.Env.Event.(domain.MessageEdited); ok && it.Origin.Redriven && b.valid[i] && !seen[e.MessageID] {
			if m := b.msgs[e.MessageID]; m != nil && m.existed {
				seen[e.MessageID] = true
				ids = append(ids, e.MessageID)
			}
		}
	}
	if len(ids) == 0 {
		return nil
	}
	var rows []struct {
		ID        string
		CreatedAt time.Time
		EditedAt  *time.Time
	}
	if err := scanRaw(tx.Raw(`SELECT id, created_at, edited_at FROM messages WHERE id = ANY(?::text[])`, arr(ids)), &rows); err != nil {
		return fmt.Errorf("read re-driven edits' messages: %w", err)
	}
	for _, r := range rows {
		if m := b.msgs[r.ID]; m != nil {
			m.createdAt = r.CreatedAt.UTC()
			if r.EditedAt != nil {
				at := r.EditedAt.UTC()
				m.editedAt = &at
			}
		}
	}
	return nil
}
