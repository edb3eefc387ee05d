package projections_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/projections"
)

func TestRoomEventsGetGapFreeSeqPerRoom(t *testing.T) {
	f := newFixture(t)
	f.expect(chattest.MemberJoined("r1", "u-1"), projections.Applied)
	f.expect(chattest.MessageCreated("r1", "m1", "one"), projections.Applied)
	f.expect(chattest.MessageCreated("r2", "m2", "other room"), projections.Applied)
	f.expect(chattest.MessageEdited("r1", "m1", "one, edited"), projections.Applied)
	f.expect(chattest.MemberLeft("r1", "u-1"), projections.Applied)

	if m := f.message("m1"); m.Seq != 2 || m.Content != "one, edited" || m.EditedAt == nil {
		t.Errorf("m1 = seq %d content %q edited %v, want seq 2, edited content", m.Seq, m.Content, m.EditedAt)
	}
	if m := f.message("m2"); m.Seq != 1 {
		t.Errorf("m2 seq = %d, want 1 (its own room's sequence)", m.Seq)
	}
	var seqs []int64
	for _, d := range f.pending() {
		if d.RoomID == "r1" {
			seqs = append(seqs, d.Seq)
		}
	}
	if want := []int64{1, 2, 3, 4}; !equal(seqs, want) {
		t.Errorf("r1 delivery seqs = %v, want %v", seqs, want)
	}
	if n := f.count("room_members", "room_id = 'r1'"); n != 0 {
		t.Errorf("room_members of r1 = %d after leaving, want 0", n)
	}
	var room projections.Room
	f.db.First(&room, "room_id = ?", "r1")
	if room.LastSeq != 4 {
		t.Errorf("rooms.last_seq = %d, want 4", room.LastSeq)
	}
}

func TestNewMessagePayloadIsTheFrontEndsChatMessage(t *testing.T) {
	f := newFixture(t)
	e := chattest.MessageCreated("r1", "m1", "<b>hi</b> & bye")
	f.project(e)
	ds := f.pending()
	if len(ds) != 1 {
		t.Fatalf("deliveries = %d, want 1", len(ds))
	}
	d := ds[0]
	if d.Name != "new-message" || len(d.Channels) != 1 || d.Channels[0] != "private-room-r1" {
		t.Fatalf("delivery = %s on %v, want new-message on private-room-r1", d.Name, d.Channels)
	}
	if !strings.Contains(d.Data, "<b>hi</b> & bye") {
		t.Errorf("data %s: HTML characters were escaped", d.Data)
	}
	got := payload(t, d)
	want := map[string]any{
		"id": "m1", "content": "<b>hi</b> & bye", "authorId": "u-1", "authorName": "Ada", "authorAvatar": nil,
		"createdAt": e.Data["createdAt"], "roomId": "r1", "seq": float64(1),
	}
	if len(got) != len(want) {
		t.Errorf("payload has fields %v, want exactly %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("payload[%s] = %v, want %v", k, got[k], v)
		}
	}
}

func TestDuplicateIDHasOneEffect(t *testing.T) {
	f := newFixture(t)
	e := chattest.MessageCreated("r1", "m1", "hello")
	f.expect(e, projections.Applied)
	f.expect(e, projections.Duplicate)
	f.expect(e, projections.Duplicate)
	if n := f.count("events", ""); n != 1 {
		t.Errorf("events = %d, want 1", n)
	}
	if n := f.count("deliveries", ""); n != 1 {
		t.Errorf("deliveries = %d, want 1", n)
	}
}

func TestReusedIDWithOtherPayloadKeepsTheFirst(t *testing.T) {
	f := newFixture(t)
	first := chattest.MessageCreated("r1", "m1", "first")
	f.expect(first, projections.Applied)
	second := chattest.MessageCreated("r1", "m1", "second").WithID(first.ID)
	f.expect(second, projections.Conflict)
	if m := f.message("m1"); m.Content != "first" {
		t.Errorf("content = %q, want the first payload's", m.Content)
	}
	if n := f.count("deliveries", ""); n != 1 {
		t.Errorf("deliveries = %d, want 1", n)
	}
}

func TestEditOrDeleteOfUnknownMessageIsRejectedAndNotRecorded(t *testing.T) {
	for _, tc := range []struct {
		name  string
		event *chattest.Event
	}{
		{"edit", chattest.MessageEdited("r1", "m-missing", "x")},
		{"delete", chattest.MessageDeleted("r1", "m-missing")},
		{"edit in another room", chattest.MessageEdited("r2", "m1", "x")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.expect(chattest.MessageCreated("r1", "m1", "exists"), projections.Applied)
			_, err := f.projectOne(tc.event.Envelope(t), noKafka)
			if !errors.Is(err, domain.ErrUnknownMessage) || !domain.IsPermanent(err) {
				t.Fatalf("err = %v, want a permanent domain.ErrUnknownMessage", err)
			}
			if n := f.count("events", "id = ?", tc.event.ID); n != 0 {
				t.Errorf("the rejected event was recorded; it must stay re-drivable")
			}
			if n := f.count("deliveries", ""); n != 1 {
				t.Errorf("deliveries = %d, want 1 (the create only)", n)
			}
		})
	}
}

func TestRedrivenEditAppliesOnceTheMessageExists(t *testing.T) {
	f := newFixture(t)
	edit := chattest.MessageEdited("r1", "m1", "edited")
	if _, err := f.projectOne(edit.Envelope(t), noKafka); !errors.Is(err, domain.ErrUnknownMessage) {
		t.Fatalf("err = %v, want ErrUnknownMessage", err)
	}
	f.expect(chattest.MessageCreated("r1", "m1", "original"), projections.Applied)
	f.expect(edit, projections.Applied)
	f.expect(edit, projections.Duplicate)
	if m := f.message("m1"); m.Content != "edited" || m.Seq != 1 {
		t.Errorf("message = %q seq %d, want edited seq 1", m.Content, m.Seq)
	}
}

func TestNoOpEventsAreRecordedWithoutSeqOrDelivery(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup []*chattest.Event
		noop  *chattest.Event
	}{
		{"second create of a message id", []*chattest.Event{chattest.MessageCreated("r1", "m1", "a")}, chattest.MessageCreated("r1", "m1", "b")},
		{"edit of a deleted message", []*chattest.Event{chattest.MessageCreated("r1", "m1", "a"), chattest.MessageDeleted("r1", "m1")}, chattest.MessageEdited("r1", "m1", "secret")},
		{"delete of a deleted message", []*chattest.Event{chattest.MessageCreated("r1", "m1", "a"), chattest.MessageDeleted("r1", "m1")}, chattest.MessageDeleted("r1", "m1")},
		{"joining twice", []*chattest.Event{chattest.MemberJoined("r1", "u-1")}, chattest.MemberJoined("r1", "u-1")},
		{"leaving a room one is not in", []*chattest.Event{chattest.MemberJoined("r1", "u-1")}, chattest.MemberLeft("r1", "u-9")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			for _, e := range tc.setup {
				f.expect(e, projections.Applied)
			}
			before := f.count("deliveries", "")
			f.expect(tc.noop, projections.Unchanged)
			f.expect(tc.noop, projections.Duplicate) // still recorded: its id stays idempotent
			ev := f.event(tc.noop.ID)
			if ev.Seq != nil {
				t.Errorf("no-op event got seq %d", *ev.Seq)
			}
			if after := f.count("deliveries", ""); after != before {
				t.Errorf("deliveries %d -> %d, want no new delivery", before, after)
			}
			var room projections.Room
			f.db.First(&room, "room_id = ?", "r1")
			if room.LastSeq != int64(len(tc.setup)) {
				t.Errorf("last_seq = %d, want %d", room.LastSeq, len(tc.setup))
			}
			if strings.Contains(ev.Data, "secret") {
				t.Errorf("an edit of a deleted message kept its text in the event store: %s", ev.Data)
			}
		})
	}
}

// A delete erases the message's text from every stored event that carries it
// (its create, its edits, a repeated create in its room), and from its
// deliveries still owed; one event per batch, all in one batch, or the
// delete in a later batch than the events it redacts. The deliveries are
// re-rendered in the shape of every payload, marked "redacted": true.
func TestDeleteRedactsMessageEventsAndPendingDeliveries(t *testing.T) {
	for _, mode := range []string{"one event per batch", "one batch", "delete in a later batch"} {
		t.Run(mode, func(t *testing.T) {
			f := newFixture(t)
			create := chattest.MessageCreated("r1", "m1", "my secret")
			edit := chattest.MessageEdited("r1", "m1", "my edited secret")
			again := chattest.MessageCreated("r1", "m1", "my secret again") // changes nothing, but is stored
			other := chattest.MessageCreated("r1", "m2", "keep me")
			del := chattest.MessageDeleted("r1", "m1")
			events := []*chattest.Event{create, edit, again, other, del}
			want := []projections.Outcome{projections.Applied, projections.Applied, projections.Unchanged, projections.Applied, projections.Applied}
			var batches [][]*chattest.Event
			switch mode {
			case "one event per batch":
				for i, e := range events {
					f.expect(e, want[i])
				}
			case "one batch":
				batches = [][]*chattest.Event{events}
			default:
				batches = [][]*chattest.Event{events[:4], events[4:]}
			}
			n := 0
			for _, batch := range batches {
				items := make([]projections.Item, len(batch))
				for i, e := range batch {
					items[i] = projections.Item{Env: e.Envelope(t), Origin: noKafka}
				}
				results, err := f.p.ProjectBatch(context.Background(), items)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range results {
					if r.Err != nil || r.Outcome != want[n] {
						t.Errorf("event %d: %v %v, want %v", n, r.Outcome, r.Err, want[n])
					}
					n++
				}
			}
			m := f.message("m1")
			if m.Content != "" || m.DeletedAt == nil || m.DeletedBy == nil || *m.DeletedBy != "u-2" {
				t.Errorf("deleted message = %+v, want empty content, deleted_at and deleted_by", m)
			}
			if m.Seq != 1 || m.AuthorID != "u-1" {
				t.Errorf("deleted message lost its facts: %+v", m)
			}
			for _, id := range []string{create.ID, edit.ID, again.ID} {
				ev := f.event(id)
				if strings.Contains(ev.Data, "secret") {
					t.Errorf("event %s keeps deleted text: %s", ev.Type, ev.Data)
				}
				var data map[string]any
				_ = json.Unmarshal([]byte(ev.Data), &data)
				if data["content"] != "" || data["messageId"] != "m1" {
					t.Errorf("event %s data = %v, want content \"\" and the other facts", ev.Type, data)
				}
			}
			if ev := f.event(other.ID); !strings.Contains(ev.Data, "keep me") {
				t.Errorf("another message's event was redacted: %s", ev.Data)
			}
			names := []string{}
			for _, d := range f.pending() {
				names = append(names, d.Name)
				if strings.Contains(d.Data, "secret") {
					t.Errorf("pending delivery %s still carries deleted text: %s", d.Name, d.Data)
				}
				switch d.EventID {
				case create.ID:
					checkRedacted(t, d, create, 1)
				case edit.ID:
					checkRedacted(t, d, edit, 2)
				case other.ID:
					if !strings.HasSuffix(d.Data, `"content":"keep me","authorId":"u-1","authorName":"Ada","authorAvatar":null,"createdAt":"`+other.Data["createdAt"].(string)+`","roomId":"r1","seq":3}`) {
						t.Errorf("another message's delivery changed: %s", d.Data)
					}
				}
			}
			if want := "new-message,message-edited,new-message,message-deleted"; strings.Join(names, ",") != want {
				t.Errorf("deliveries = %v, want %s", names, want)
			}
		})
	}
}

func TestNotificationsUseOneTriggerPerHundredChannels(t *testing.T) {
	f := newFixture(t)
	users := append(chattest.IDs("u", 250), "u-1", "u-2") // duplicates are delivered once
	f.expect(chattest.UserNotification(users, "hi"), projections.Applied)
	rooms := chattest.IDs("room", 1000)
	f.expect(chattest.RoomsNotification(rooms, "all"), projections.Applied)

	var userChunks, roomChunks []int
	seen := map[string]bool{}
	for _, d := range f.pending() {
		if d.RoomID != "" || d.Seq != 0 {
			t.Errorf("notification delivery carries room %q seq %d", d.RoomID, d.Seq)
		}
		for _, ch := range d.Channels {
			if seen[ch] {
				t.Errorf("channel %s delivered twice", ch)
			}
			seen[ch] = true
		}
		switch {
		case strings.HasPrefix(d.Channels[0], "private-user-"):
			userChunks = append(userChunks, len(d.Channels))
		case strings.HasPrefix(d.Channels[0], "private-room-"):
			roomChunks = append(roomChunks, len(d.Channels))
		}
		if _, hasSeq := payload(t, d)["seq"]; hasSeq {
			t.Errorf("notification payload has a seq: %s", d.Data)
		}
	}
	if !equal(userChunks, []int{100, 100, 50}) {
		t.Errorf("user notification triggers = %v, want [100 100 50]", userChunks)
	}
	if len(roomChunks) != 10 {
		t.Errorf("rooms notification triggers = %v, want 10 of 100", roomChunks)
	}
}

func TestOversizedMessageIsDeliveredTruncatedAndStoredWhole(t *testing.T) {
	f := newFixture(t)
	content := strings.Repeat("漢", 4000) // 12,000 bytes of UTF-8
	f.expect(chattest.MessageCreated("r1", "m1", content), projections.Applied)
	if m := f.message("m1"); m.Content != content {
		t.Errorf("messages keeps %d characters, want the whole 4000", len([]rune(m.Content)))
	}
	d := f.pending()[0]
	if len(d.Data) > domain.MaxPusherDataBytes || !d.Truncated {
		t.Fatalf("delivery is %d bytes, truncated=%v; want <= %d and truncated", len(d.Data), d.Truncated, domain.MaxPusherDataBytes)
	}
	p := payload(t, d)
	got, _ := p["content"].(string)
	if p["truncated"] != true || got == "" || !strings.HasPrefix(content, got) {
		t.Errorf("payload truncated=%v content %d chars: want truncated:true and a prefix of the message", p["truncated"], len([]rune(got)))
	}
	if len(d.Data) < domain.MaxPusherDataBytes-16 {
		t.Errorf("truncated to %d bytes: wasteful, the longest fitting prefix is wanted", len(d.Data))
	}
}

func TestPayloadThatCannotFitIsParkedNotDropped(t *testing.T) {
	f := newFixture(t)
	n := chattest.UserNotification([]string{"u-1"}, "huge url")
	notification := n.Data["notification"].(map[string]any)
	notification["url"] = strings.Repeat("\u0001", 2048) // 6 bytes each in JSON
	f.expect(n, projections.Applied)
	if got := len(f.pending()); got != 0 {
		t.Errorf("pending = %d, want the delivery parked, not pending", got)
	}
	var row projections.DeliveryRow
	if err := f.db.First(&row, "event_id = ?", n.ID).Error; err != nil {
		t.Fatalf("the delivery must be kept: %v", err)
	}
	if row.ParkedAt == nil || row.ParkedReason == nil || !strings.Contains(*row.ParkedReason, "10 KB") {
		t.Errorf("parked = %v reason %v, want parked with a 10 KB reason", row.ParkedAt, row.ParkedReason)
	}
}

func TestOccurredAtFallsBackToKafkaTimestamp(t *testing.T) {
	f := newFixture(t)
	kafkaTime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	withTime := chattest.MemberJoined("r1", "u-1")
	without := chattest.MemberJoined("r1", "u-2").NoTime()
	for _, e := range []*chattest.Event{withTime, without} {
		if _, err := f.projectOne(e.Envelope(t), projections.Origin{Partition: 3, Offset: 42, Timestamp: kafkaTime}); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.event(withTime.ID).OccurredAt; !got.Equal(*withTime.Time) {
		t.Errorf("occurred_at = %v, want the CloudEvents time %v", got, *withTime.Time)
	}
	ev := f.event(without.ID)
	if !ev.OccurredAt.Equal(kafkaTime) {
		t.Errorf("occurred_at = %v, want the Kafka timestamp %v", ev.OccurredAt, kafkaTime)
	}
	if ev.KafkaPartition == nil || *ev.KafkaPartition != 3 || ev.KafkaOffset == nil || *ev.KafkaOffset != 42 {
		t.Errorf("kafka position = %v/%v, want 3/42", ev.KafkaPartition, ev.KafkaOffset)
	}
}

func TestSocketIDIsKeptForRoomDeliveries(t *testing.T) {
	f := newFixture(t)
	f.project(chattest.MessageCreated("r1", "m1", "hi").With("socketId", "123.456"))
	if d := f.pending()[0]; d.SocketID != "123.456" {
		t.Errorf("socket id = %q, want 123.456", d.SocketID)
	}
}

func TestConcurrentProjectionsOfOneRoomKeepSeqGapFree(t *testing.T) {
	f := newFixture(t)
	const n = 40
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := f.projectOne(chattest.MessageCreated("r1", chattest.IDs("m", n)[i], "x").Envelope(t), noKafka)
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	var seqs []int64
	f.db.Table("messages").Order("seq").Pluck("seq", &seqs)
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("seqs = %v, want 1..%d without gaps or repeats", seqs, n)
		}
	}
	var last []int64
	for _, d := range f.pending() {
		if len(last) > 0 && d.Seq <= last[len(last)-1] {
			t.Fatalf("outbox order %v then %d: a room's deliveries must be in seq order", last, d.Seq)
		}
		last = append(last, d.Seq)
	}
}
