package e2e

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/roomcast/roomcast/internal/chattest"
)

const (
	room  = "room-e2e"
	other = "room-other"
)

// A member subscribes to the room's private and presence channels through
// the API and sees the members with the names and avatars of
// room_members; a non-member's room and another user's channel are refused.
func TestBrowserSubscriptionsFollowRoomMembership(t *testing.T) {
	s := newStack(t)
	s.send(chattest.MemberJoined(room, "alice"), chattest.MemberJoined(room, "bob").With("userAvatar", nil),
		chattest.MemberJoined(other, "carol"))
	s.waitProjected(room, 2)
	s.waitProjected(other, 1)

	b := s.browser("alice", "bob")
	b.do(map[string]any{"cmd": "join", "user": "alice", "room": room, "presence": true})
	b.do(map[string]any{"cmd": "join", "user": "alice", "room": other})
	b.do(map[string]any{"cmd": "notifications", "user": "alice", "userId": "bob"})
	b.await("subscribed", func(l line) bool { return l.User == "alice" && l.Room == room })
	refused := b.await("error", func(l line) bool { return l.User == "alice" && l.Room == other })
	if refused.Kind != "subscription" || refused.Status != 403 || !refused.Fatal {
		t.Fatalf("alice on %s: %s, want a fatal subscription error with status 403", other, describe(refused))
	}
	refused = b.await("error", func(l line) bool { return l.User == "alice" && strings.Contains(l.Message, "private-user-bob") })
	if refused.Status != 403 {
		t.Fatalf("alice on bob's channel: %s, want status 403", describe(refused))
	}

	b.do(map[string]any{"cmd": "join", "user": "bob", "room": room, "presence": true})
	seen := b.await("members", func(l line) bool { return l.User == "alice" && l.Room == room && len(l.Members) == 2 })
	slices.SortFunc(seen.Members, func(a, b member) int { return strings.Compare(a.ID, b.ID) })
	want := `[{"id":"alice","info":{"name":"User alice","avatar":"https://example.com/alice.png"}},{"id":"bob","info":{"name":"User bob","avatar":""}}]`
	if got := describe(seen.Members); got != want {
		t.Fatalf("alice sees the members %s, want %s", got, want)
	}
	// Both handed over the room's history (the two joins) and nothing of
	// the room they are not in.
	b.reach("alice", room, 2)
	b.reach("bob", room, 2)
	b.checkExactHistory("alice", room, 2)
	if evs := b.events("alice", other); len(evs) != 0 {
		t.Fatalf("alice got %d events of %s, where she is no member", len(evs), other)
	}
}

// Whatever Pusher loses - calls it accepted and never delivered, a late
// subscription, an outage of the Pusher server - each client ends with
// exactly the room's history, every seq once and in order, the truncated
// texts whole.
func TestBrowserClientEndsWithExactlyTheRoomsHistory(t *testing.T) {
	s := newStack(t)
	big1, big2 := strings.Repeat("語", 4000), strings.Repeat("編", 3999)+"!"
	s.send(chattest.MemberJoined(room, "alice"), chattest.MemberJoined(room, "bob"),
		chattest.MessageCreated(room, "m-1", "before anyone listens")) // seq 1-3
	s.waitProjected(room, 3)

	b := s.browser("alice", "bob")
	b.do(map[string]any{"cmd": "join", "user": "alice", "room": room, "presence": true})
	b.reach("alice", room, 3) // from history: sent before she subscribed

	// Live.
	s.send(chattest.MessageCreated(room, "m-2", "hello live"), chattest.MessageEdited(room, "m-2", "hello edited"),
		chattest.MessageCreated(room, "m-3", big1)) // seq 4-6
	b.reach("alice", room, 6)

	// Lost: Pusher accepts the calls and delivers nothing.
	s.gate.dropping.Store(true)
	s.send(chattest.MessageCreated(room, "m-4", "lost 1"), chattest.MessageDeleted(room, "m-2"),
		chattest.MessageCreated(room, "m-5", big2), chattest.MessageEdited(room, "m-4", "lost 2")) // seq 7-10
	s.gate.waitSent(t, room, 10)
	s.gate.dropping.Store(false)
	for _, e := range b.events("alice", room) {
		if e.Seq > 6 {
			t.Fatalf("alice got seq %d, which the gate dropped", e.Seq)
		}
	}
	s.send(chattest.MessageCreated(room, "m-6", "reveals the gap")) // seq 11
	b.reach("alice", room, 11)

	// Late: bob subscribes after all of it.
	b.do(map[string]any{"cmd": "join", "user": "bob", "room": room, "presence": true})
	b.reach("bob", room, 11)

	// Out: soketi stops (the clients lose their connections, the worker's
	// calls fail) while events come, and comes back.
	if err := s.soketi.Stop(); err != nil {
		t.Fatal(err)
	}
	s.send(chattest.MessageCreated(room, "m-7", "during the outage"), chattest.MemberJoined(room, "dave")) // seq 12-13
	s.waitProjected(room, 13)
	if err := s.soketi.Restart(); err != nil {
		t.Fatal(err)
	}
	s.send(chattest.MessageCreated(room, "m-8", "after the outage")) // seq 14
	b.reach("alice", room, 14)
	b.reach("bob", room, 14)

	sent := s.gate.Sent(room)
	feed := s.roomFeed("alice", room)
	full := map[string]string{"m-3": big1, "m-5": big2}
	for _, user := range []string{"alice", "bob"} {
		for _, e := range b.checkExactHistory(user, room, 14) {
			checkPayload(t, user, e, sent[e.Seq], feed[e.Seq], full)
		}
	}
	// alice had m-2 live, before its delete; bob, late, from history, where
	// the delete has redacted it.
	if got := text(b.events("alice", room)[3]); got != "hello live" {
		t.Fatalf("alice's seq 4 says %q, want the text sent live", got)
	}
	if e := b.events("bob", room)[3]; text(e) != "" || !strings.Contains(string(e.Data), `"redacted":true`) {
		t.Fatalf("bob's seq 4 is %s, want it redacted", e.Data)
	}
	if !sent[7].Dropped || sent[11].Dropped {
		t.Fatalf("the gate did not drop what the test meant it to: 7 %v, 11 %v", sent[7].Dropped, sent[11].Dropped)
	}
}

// checkPayload fails t unless e is what the worker sent for its seq or what
// the API's history serves for it, with a truncated text made whole.
func checkPayload(t *testing.T, user string, e line, sent sentEvent, served json.RawMessage, full map[string]string) {
	t.Helper()
	if e.Event != sent.Name {
		t.Fatalf("%s's seq %d is %s, the worker sent %s", user, e.Seq, e.Event, sent.Name)
	}
	var id struct{ ID string }
	_ = json.Unmarshal(e.Data, &id)
	want := []json.RawMessage{json.RawMessage(sent.Data), served}
	if whole, ok := full[id.ID]; ok && e.Event == "new-message" {
		for i, w := range want {
			want[i] = wholeText(t, w, whole)
		}
	}
	got := canonical(t, e.Data)
	for _, w := range want {
		if bytes.Equal(got, canonical(t, w)) {
			return
		}
	}
	t.Fatalf("%s's seq %d is\n%s\nwant what was sent\n%s\nor what history serves\n%s", user, e.Seq, got, sent.Data, served)
}

// wholeText is payload with its text replaced by whole and no truncated flag.
func wholeText(t *testing.T, payload json.RawMessage, whole string) json.RawMessage {
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatal(err)
	}
	if m["truncated"] != true {
		t.Fatalf("the payload of a 12 KB text was not truncated: %.200s", payload)
	}
	m["content"] = whole
	delete(m, "truncated")
	b, _ := json.Marshal(m)
	return b
}

func canonical(t *testing.T, raw json.RawMessage) []byte {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("not JSON: %.200s", raw)
	}
	b, _ := json.Marshal(v)
	return b
}

func text(e line) string {
	var p struct{ Content string }
	_ = json.Unmarshal(e.Data, &p)
	return p.Content
}
