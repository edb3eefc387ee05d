package projections_test

import (
	"context"
	"testing"

	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/projections"
)

// Message history comes newest first, a page before a seq at a time, with
// deleted messages as tombstones (no text, deleted_at set) in their place,
// and only the room's own messages.
func TestRoomMessagesPageNewestFirstWithTombstones(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const room = "room-1"
	for i, id := range chattest.IDs("m", 7) {
		f.project(chattest.MessageCreated(room, id, "text of "+id))
		if i == 0 {
			f.project(chattest.MemberJoined(room, "u-9")) // seq 2: not a message
		}
	}
	f.project(chattest.MessageDeleted(room, "m-3"))
	f.project(chattest.MessageCreated("room-2", "other", "elsewhere"))

	var seqs []int64
	var before int64
	for pages := 0; ; pages++ {
		ms, more, err := projections.RoomMessages(ctx, f.db, room, before, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.RoomID != room {
				t.Errorf("message %s of room %s in the history of %s", m.ID, m.RoomID, room)
			}
			if m.ID == "m-3" {
				if m.DeletedAt == nil || m.Content != "" {
					t.Errorf("deleted m-3: deleted_at %v, content %q; want a tombstone", m.DeletedAt, m.Content)
				}
			} else if m.DeletedAt != nil || m.Content != "text of "+m.ID {
				t.Errorf("message %s: deleted_at %v, content %q", m.ID, m.DeletedAt, m.Content)
			}
			seqs = append(seqs, m.Seq)
			before = m.Seq
		}
		if !more {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
	}
	if want := []int64{8, 7, 6, 5, 4, 3, 1}; !equal(seqs, want) {
		t.Errorf("history seqs %v, want %v", seqs, want)
	}
	if ms, more, err := projections.RoomMessages(ctx, f.db, room, 1, 3); err != nil || len(ms) != 0 || more {
		t.Errorf("before seq 1: %d messages, more %v, %v; want none", len(ms), more, err)
	}
}

// One message comes with its whole text, which its payload carried
// truncated, and only from its own room.
func TestRoomMessageHasTheWholeText(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.project(chattest.MessageCreated("room-1", "m-1", longText))
	if d := f.pending()[0]; !d.Truncated {
		t.Fatal("the payload was not truncated")
	}
	m, ok, err := projections.RoomMessage(ctx, f.db, "room-1", "m-1")
	if err != nil || !ok || m.Content != longText || m.Seq != 1 || m.AuthorName != "Ada" {
		t.Fatalf("m-1: found %v, seq %d, %d bytes of text, %v", ok, m.Seq, len(m.Content), err)
	}
	if _, ok, err := projections.RoomMessage(ctx, f.db, "room-2", "m-1"); err != nil || ok {
		t.Errorf("m-1 through room-2: found %v, %v; want not found", ok, err)
	}
	if _, ok, err := projections.RoomMessage(ctx, f.db, "room-1", "m-404"); err != nil || ok {
		t.Errorf("unknown message: found %v, %v; want not found", ok, err)
	}
}
