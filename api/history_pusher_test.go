package api_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
)

// sentBySeq is what the fake Pusher accepted on room's channel, by seq
// (the last copy of a seq, were one sent twice), and the events without one.
func (f *pusherFixture) sentBySeq(room string) (bySeq map[int64]domain.Delivery, unsequenced []string) {
	f.t.Helper()
	bySeq = map[int64]domain.Delivery{}
	for _, e := range f.pusher.EventsOn(domain.RoomChannel(room)) {
		var p struct {
			Seq int64 `json:"seq"`
		}
		if err := json.Unmarshal([]byte(e.Data), &p); err != nil {
			f.t.Fatalf("Pusher got %s %q: %v", e.Name, e.Data, err)
		}
		if p.Seq == 0 {
			unsequenced = append(unsequenced, e.Name)
			continue
		}
		bySeq[p.Seq] = domain.Delivery{Name: e.Name, Data: e.Data}
	}
	return bySeq, unsequenced
}

// checkEndpointIs fails unless room's events endpoint answers, from seq 1
// to lastSeq, exactly want's payloads, byte for byte.
func (f *pusherFixture) checkEndpointIs(user, room string, want map[int64]domain.Delivery) {
	f.t.Helper()
	var page feedPage
	f.getJSON(user, "/rooms/"+room+"/events?after_seq=0&limit=500", &page)
	if page.RoomID != room || page.LastSeq != int64(len(want)) || page.More || len(page.Events) != len(want) {
		f.t.Fatalf("events of %s: room %q, lastSeq %d, more %v, %d events; want %d events up to seq %d",
			room, page.RoomID, page.LastSeq, page.More, len(page.Events), len(want), len(want))
	}
	for i, e := range page.Events {
		d := want[int64(i+1)]
		if e.Seq != int64(i+1) || e.Event != d.Name || !bytes.Equal(e.Data, []byte(d.Data)) {
			f.t.Errorf("seq %d:\n endpoint %d %s %s\n   Pusher %s %s", i+1, e.Seq, e.Event, e.Data, d.Name, d.Data)
		}
	}
}

// The events endpoint answers, for every room event type, the payload
// Pusher was sent, byte for byte: HTML characters, U+2028 and emoji
// unescaped, null and set avatars, texts truncated to fit 10 KB; and for a
// message deleted after Pusher got its create and edits, those payloads
// with the redaction a delete leaves in the outbox (domain.RedactDelivery
// of what Pusher got). The rooms notification Pusher got on the room's
// channel has no seq and is not in the feed.
func TestEventsEndpointIsWhatPusherGot(t *testing.T) {
	f := newPusherFixture(t)
	const room = "room-1"
	f.dispatch()
	f.project(
		chattest.MemberJoined(room, "u-1"),
		chattest.MemberJoined(room, "u-2"),
		chattest.MessageCreated(room, "m-1", "<b>hi</b> & \"bye\" \u2028 \U0001F600 \x01"),
		chattest.MessageCreated(room, "m-2", strings.Repeat("語", 4000)).With("authorAvatar", "https://example.com/a.png?x=<1>&y=2"),
		chattest.MessageEdited(room, "m-1", "edited </script>"),
		chattest.MessageEdited(room, "m-2", strings.Repeat("\x02", 3999)+"!"),
		chattest.MessageCreated(room, "m-3", strings.Repeat("秘", 4000)),
		chattest.MessageEdited(room, "m-3", "secret edit"),
		chattest.RoomsNotification([]string{room}, "for everyone in the room"),
		chattest.MemberLeft(room, "u-2"),
	)
	f.settle()
	f.project(chattest.MessageDeleted(room, "m-3")) // after Pusher got m-3's text
	f.settle()
	sent, unsequenced := f.sentBySeq(room)
	if len(sent) != 10 || len(unsequenced) != 1 || unsequenced[0] != "notification" {
		t.Fatalf("Pusher got %d sequenced events and %v on the room channel; want 10 and one notification", len(sent), unsequenced)
	}
	for _, seq := range []int64{4, 6, 7} {
		if !strings.Contains(sent[seq].Data, `"truncated":true`) {
			t.Fatalf("seq %d was not truncated: %.200s", seq, sent[seq].Data)
		}
	}
	want := map[int64]domain.Delivery{}
	for seq, d := range sent {
		want[seq] = d
	}
	for _, seq := range []int64{7, 8} { // m-3's create and edit
		r, err := domain.RedactDelivery(sent[seq])
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(r.Data, "秘") || strings.Contains(r.Data, "secret") || strings.Contains(r.Data, "truncated") {
			t.Fatalf("redacted seq %d keeps text: %s", seq, r.Data)
		}
		want[seq] = r
	}
	f.checkEndpointIs("u-1", room, want)
}

// A message deleted while Pusher had not accepted its deliveries yet (the
// dispatcher stopped), in a later batch than its create and edit: Pusher
// then gets them redacted in the outbox, and the events endpoint answers
// exactly those bytes.
func TestEventsEndpointIsWhatPusherGotForMessagesDeletedBeforeDelivery(t *testing.T) {
	f := newPusherFixture(t)
	const room = "room-1"
	f.project(
		chattest.MemberJoined(room, "u-1"),
		chattest.MessageCreated(room, "m-1", strings.Repeat("秘", 4000)),
		chattest.MessageEdited(room, "m-1", "secret edit"),
		chattest.MessageCreated(room, "m-2", "kept"),
		chattest.MessageDeleted(room, "m-1"),
		chattest.MessageEdited(room, "m-1", "after the delete: no seq"),
	)
	f.dispatch()
	f.settle()
	sent, _ := f.sentBySeq(room)
	if len(sent) != 5 {
		t.Fatalf("Pusher got %d sequenced events, want 5", len(sent))
	}
	for _, seq := range []int64{2, 3} {
		if strings.Contains(sent[seq].Data, "秘") || strings.Contains(sent[seq].Data, "secret") {
			t.Fatalf("Pusher got the deleted text at seq %d: %.200s", seq, sent[seq].Data)
		}
	}
	f.checkEndpointIs("u-1", room, sent)
}
