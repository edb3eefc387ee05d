package projections_test

import (
	"context"
	"testing"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/projections"
)

// deliveryRows returns the outbox rows of an event, in id order.
func (f *fixture) deliveryRows(eventID string) []projections.DeliveryRow {
	f.t.Helper()
	var rows []projections.DeliveryRow
	if err := f.db.Where("event_id = ?", eventID).Order("id").Find(&rows).Error; err != nil {
		f.t.Fatalf("deliveries of %s: %v", eventID, err)
	}
	return rows
}

func TestMemberLeftOwesATerminateCallWhenTheSettingIsOn(t *testing.T) {
	f := newFixture(t)
	f.p.TerminateConnectionsOnLeave(true)
	f.expect(chattest.MemberJoined("room-1", "u-7"), projections.Applied)
	left := chattest.MemberLeft("room-1", "u-7")
	f.expect(left, projections.Applied)

	rows := f.deliveryRows(left.ID)
	if len(rows) != 2 {
		t.Fatalf("deliveries of the leave: %d rows, want user-left then the terminate call", len(rows))
	}
	userLeft, term := rows[0], rows[1]
	if userLeft.Name != domain.PusherUserLeft || userLeft.Seq == nil || *userLeft.Seq != 2 {
		t.Errorf("first row = %s seq %v, want user-left with seq 2", userLeft.Name, userLeft.Seq)
	}
	if term.Name != domain.PusherTerminateConnections || term.Data != "{}" || term.RoomID != nil || term.Seq != nil ||
		len(term.Channels) != 1 || term.Channels[0] != "private-user-u-7" {
		t.Errorf("terminate row = %+v, want %s on private-user-u-7 with data {}, no room, no seq", term, domain.PusherTerminateConnections)
	}
	// The leave's event names its room delivery (what a delete would
	// redact), not the terminate call.
	var deliveryID *int64
	if err := f.db.Raw(`SELECT delivery_id FROM events WHERE id = ?`, left.ID).Scan(&deliveryID).Error; err != nil {
		t.Fatal(err)
	}
	if deliveryID == nil || *deliveryID != userLeft.ID {
		t.Errorf("events.delivery_id of the leave = %v, want %d (its user-left row)", deliveryID, userLeft.ID)
	}
	// The outbox hands it out like any delivery.
	var found bool
	for _, d := range f.pending() {
		if d.ID == term.ID {
			found = true
			if user, err := domain.TerminatedUser(d); err != nil || user != "u-7" {
				t.Errorf("pending terminate delivery names %q (%v), want u-7", user, err)
			}
		}
	}
	if !found {
		t.Errorf("the terminate delivery %d is not pending", term.ID)
	}
}

func TestMemberLeftOwesNoTerminateCallByDefault(t *testing.T) {
	f := newFixture(t)
	f.expect(chattest.MemberJoined("room-1", "u-7"), projections.Applied)
	left := chattest.MemberLeft("room-1", "u-7")
	f.expect(left, projections.Applied)
	if rows := f.deliveryRows(left.ID); len(rows) != 1 || rows[0].Name != domain.PusherUserLeft {
		t.Errorf("deliveries of the leave = %+v, want the user-left row alone", rows)
	}
	if n := f.count("deliveries", "name = ?", domain.PusherTerminateConnections); n != 0 {
		t.Errorf("%d terminate rows, want none", n)
	}
}

func TestOnlyALeaveThatRemovesAMemberOwesATerminateCall(t *testing.T) {
	f := newFixture(t)
	f.p.TerminateConnectionsOnLeave(true)
	// A leave of a non-member changes nothing and owes nothing.
	f.expect(chattest.MemberLeft("room-1", "u-1"), projections.Unchanged)
	// In one batch: join, leave, join again, leave again, leave once more:
	// two leaves remove the member, each owes one call; a join owes none.
	events := []*chattest.Event{
		chattest.MemberJoined("room-1", "u-2"), chattest.MemberLeft("room-1", "u-2"),
		chattest.MemberJoined("room-1", "u-2"), chattest.MemberLeft("room-1", "u-2"),
		chattest.MemberLeft("room-1", "u-2"),
	}
	items := make([]projections.Item, len(events))
	for i, e := range events {
		items[i] = projections.Item{Env: e.Envelope(t), Origin: noKafka}
	}
	results, err := f.p.ProjectBatch(context.Background(), items)
	if err != nil {
		t.Fatal(err)
	}
	if results[4].Outcome != projections.Unchanged {
		t.Fatalf("the third leave: %v, want unchanged", results[4].Outcome)
	}
	for i, want := range []int{1, 2, 1, 2, 0} {
		if got := len(f.deliveryRows(events[i].ID)); got != want {
			t.Errorf("event %d (%s): %d deliveries, want %d", i, events[i].Type, got, want)
		}
	}
	if n := f.count("deliveries", "name = ?", domain.PusherTerminateConnections); n != 2 {
		t.Errorf("%d terminate rows, want 2", n)
	}
}
