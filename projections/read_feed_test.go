package projections_test

import (
	"context"
	"strings"
	"testing"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/projections"
)

// roomOwed is what the outbox holds for room now, by seq.
func (f *fixture) roomOwed(room string) map[int64]domain.Delivery {
	f.t.Helper()
	out := map[int64]domain.Delivery{}
	for _, d := range f.pending() {
		if d.RoomID == room {
			out[d.Seq] = d
		}
	}
	return out
}

// feed reads room's whole feed in one page.
func (f *fixture) feed(room string) []projections.FeedEntry {
	f.t.Helper()
	entries, _, more, err := projections.RoomFeed(context.Background(), f.db, room, 0, 10000)
	if err != nil || more {
		f.t.Fatalf("feed of %s: more %v, %v", room, more, err)
	}
	return entries
}

// deliverAll settles every pending delivery as Pusher accepted it.
func (f *fixture) deliverAll() {
	f.t.Helper()
	var ids []int64
	for _, d := range f.pending() {
		ids = append(ids, d.ID)
	}
	if err := f.outbox.MarkDelivered(context.Background(), ids); err != nil {
		f.t.Fatal(err)
	}
}

// checkFeedIs fails unless the feed of room holds exactly want, by seq,
// byte for byte.
func checkFeedIs(t *testing.T, feed []projections.FeedEntry, want map[int64]domain.Delivery) {
	t.Helper()
	if len(feed) != len(want) {
		t.Errorf("feed has %d entries, want %d", len(feed), len(want))
	}
	for i, e := range feed {
		if e.Seq != int64(i+1) {
			t.Errorf("feed entry %d has seq %d, want %d", i, e.Seq, i+1)
		}
		d, ok := want[e.Seq]
		if !ok {
			t.Errorf("feed seq %d (%s) was never owed", e.Seq, e.Event)
			continue
		}
		if e.Event != d.Name || e.Data != d.Data {
			t.Errorf("feed seq %d:\n got %s %s\nwant %s %s", e.Seq, e.Event, e.Data, d.Name, d.Data)
		}
	}
}

// longText is 4,000 CJK characters: 12 KB, over Pusher's 10 KB.
var longText = strings.Repeat("語", 4000)

// The feed of a room is, event for event, the payload the projection owed
// Pusher: every room event type but deletes (see the redaction tests),
// HTML characters unescaped, avatars null and set, truncated texts; the
// no-ops (a second join, a repeated create) and the rooms notification,
// which have no seq, are not in it.
func TestRoomFeedIsWhatTheOutboxOwes(t *testing.T) {
	f := newFixture(t)
	const room = "room-1"
	for _, e := range []*chattest.Event{
		chattest.MemberJoined(room, "u-1"),
		chattest.MemberJoined(room, "u-1"), // no-op
		chattest.MessageCreated(room, "m-1", "<b>hi</b> & \"bye\" \u2028 \U0001F600"),
		chattest.MessageCreated(room, "m-1", "repeated"), // no-op
		chattest.MessageCreated(room, "m-2", longText).With("authorAvatar", "https://example.com/a.png"),
		chattest.MessageEdited(room, "m-1", "edited <i>"),
		chattest.MessageEdited(room, "m-2", strings.Repeat("編", 4000)),
		chattest.RoomsNotification([]string{room, "room-2"}, "to the room"),
		chattest.MemberLeft(room, "u-1"),
		chattest.MemberJoined("room-2", "u-2"),
	} {
		f.project(e)
	}
	owed := f.roomOwed(room)
	if len(owed) != 6 {
		t.Fatalf("the outbox owes %d deliveries of %s, want 6", len(owed), room)
	}
	if !owed[3].Truncated || !owed[5].Truncated {
		t.Fatalf("the 12 KB texts were not truncated: %v, %v", owed[3].Truncated, owed[5].Truncated)
	}
	checkFeedIs(t, f.feed(room), owed)
}

// A message deleted after Pusher got its create and edit: the feed carries
// them as a delete leaves a delivery (domain.RedactDelivery of what was
// sent): no text, not truncated, marked the same way, every other byte the
// same.
func TestRoomFeedRedactsMessagesDeletedAfterDelivery(t *testing.T) {
	f := newFixture(t)
	const room = "room-1"
	f.project(chattest.MessageCreated(room, "m-1", longText))
	f.project(chattest.MessageEdited(room, "m-1", "short secret"))
	f.project(chattest.MessageCreated(room, "m-2", "kept"))
	sent := f.roomOwed(room)
	f.deliverAll()
	f.project(chattest.MessageDeleted(room, "m-1"))
	want := f.roomOwed(room) // the delete's own delivery, seq 4
	for _, seq := range []int64{1, 2} {
		r, err := domain.RedactDelivery(sent[seq])
		if err != nil {
			t.Fatal(err)
		}
		want[seq] = r
	}
	want[3] = sent[3]
	feed := f.feed(room)
	checkFeedIs(t, feed, want)
	for _, e := range feed[:2] {
		if strings.Contains(e.Data, "secret") || strings.Contains(e.Data, "語") || strings.Contains(e.Data, "truncated") {
			t.Errorf("feed seq %d keeps deleted text: %s", e.Seq, e.Data)
		}
	}
}

// A message deleted while its deliveries were still owed, in a later batch
// and in the same batch: the feed is what the outbox then holds, redacted
// in place, byte for byte. An edit and a repeated create recorded after the
// delete have no seq and are not in the feed.
func TestRoomFeedIsWhatTheOutboxOwesAfterADeleteBeforeDelivery(t *testing.T) {
	f := newFixture(t)
	const room = "room-1"
	f.project(chattest.MessageCreated(room, "m-1", longText))
	f.project(chattest.MessageEdited(room, "m-1", "secret edit"))
	f.project(chattest.MessageDeleted(room, "m-1"))
	f.project(chattest.MessageEdited(room, "m-1", "too late"))
	var batch []projections.Item
	for _, e := range []*chattest.Event{
		chattest.MessageCreated(room, "m-2", "secret in one batch"),
		chattest.MessageEdited(room, "m-2", longText),
		chattest.MessageDeleted(room, "m-2"),
		chattest.MessageCreated(room, "m-2", "repeated after the delete"),
	} {
		batch = append(batch, projections.Item{Env: e.Envelope(t), Origin: noKafka})
	}
	if _, err := f.p.ProjectBatch(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	owed := f.roomOwed(room)
	if len(owed) != 6 {
		t.Fatalf("the outbox owes %d deliveries, want 6", len(owed))
	}
	checkFeedIs(t, f.feed(room), owed)
}

// Paging the feed walks the room without gaps or repeats; lastSeq is the
// room's and more is false exactly on the last page. An unknown room has an
// empty feed and last seq 0.
func TestRoomFeedPagesWalkTheRoomWithoutGaps(t *testing.T) {
	f := newFixture(t)
	const room, n = "room-1", 23
	var batch []projections.Item
	for i := range n {
		e := chattest.MessageCreated(room, chattest.IDs("m", n)[i], "text")
		batch = append(batch, projections.Item{Env: e.Envelope(t), Origin: noKafka})
	}
	batch = append(batch, projections.Item{Env: chattest.MessageCreated("room-2", "other", "x").Envelope(t), Origin: noKafka})
	if _, err := f.p.ProjectBatch(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var after int64
	pages := 0
	for {
		entries, last, more, err := projections.RoomFeed(ctx, f.db, room, after, 5)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if last != n {
			t.Errorf("page %d: lastSeq %d, want %d", pages, last, n)
		}
		for _, e := range entries {
			if e.Seq != after+1 {
				t.Fatalf("page %d: seq %d after %d", pages, e.Seq, after)
			}
			after = e.Seq
		}
		if wantMore := after < n; more != wantMore {
			t.Errorf("page %d ending at seq %d: more %v, want %v", pages, after, more, wantMore)
		}
		if !more {
			break
		}
		if pages > n {
			t.Fatal("paging does not end")
		}
	}
	if after != n || pages != 5 {
		t.Errorf("walked to seq %d in %d pages, want %d in 5", after, pages, n)
	}
	entries, last, more, err := projections.RoomFeed(ctx, f.db, room, n, 5)
	if err != nil || len(entries) != 0 || last != n || more {
		t.Errorf("after the last seq: %d entries, lastSeq %d, more %v, %v; want none, %d, false", len(entries), last, more, err, n)
	}
	entries, last, more, err = projections.RoomFeed(ctx, f.db, "no-such-room", 0, 5)
	if err != nil || len(entries) != 0 || last != 0 || more {
		t.Errorf("unknown room: %d entries, lastSeq %d, more %v, %v; want none, 0, false", len(entries), last, more, err)
	}
	if _, _, _, err := projections.RoomFeed(ctx, f.db, room, 0, 0); err == nil {
		t.Error("limit 0 was accepted")
	}
}

// The page statement reads the room's events through events_room_seq and
// their messages by primary key, never a whole table, on a table of many
// rooms with statistics: pages within a room's history (an ordered index
// scan that stops after the page) and pages that take the rest of it.
func TestRoomFeedReadsThroughTheRoomSeqIndex(t *testing.T) {
	f := newFixture(t)
	for _, q := range []string{
		`INSERT INTO events (id, type, source, room_id, seq, data, fingerprint, occurred_at)
			SELECT 'e-' || g, 'chat.message.created', '/s', 'room-' || (g % 100), g / 100 + 1,
				jsonb_build_object('roomId', 'room-' || (g % 100), 'messageId', 'm-' || g, 'content', 'x'), 'f', now()
			FROM generate_series(0, 99999) AS g`,
		`INSERT INTO messages (id, room_id, seq, author_id, author_name, content, created_at)
			SELECT 'm-' || g, 'room-' || (g % 100), g / 100 + 1, 'u', 'U', 'x', now() FROM generate_series(0, 99999) AS g`,
		`INSERT INTO rooms (room_id, last_seq) SELECT 'room-' || g, 1000 FROM generate_series(0, 19999) AS g`,
		`ANALYZE events, messages, rooms`,
	} {
		if err := f.db.Exec(q).Error; err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, r := range []projections.FeedRange{{AfterSeq: 0, Limit: 100}, {AfterSeq: 900, Limit: 500}, {AfterSeq: 10, Limit: 100, Owed: true}} {
		q, args := projections.FeedSQL("room-7", r)
		var lines []string
		if err := f.db.Raw("EXPLAIN "+q, args...).Scan(&lines).Error; err != nil {
			t.Fatal(err)
		}
		plan := strings.Join(lines, "\n")
		t.Logf("feed plan for %+v:\n%s", r, plan)
		if !strings.Contains(plan, "Index Scan using events_room_seq on events") &&
			!strings.Contains(plan, "Bitmap Index Scan on events_room_seq") {
			t.Errorf("the feed does not read through events_room_seq:\n%s", plan)
		}
		if !strings.Contains(plan, "Index Scan using messages_pkey on messages") {
			t.Errorf("the feed does not probe messages by primary key:\n%s", plan)
		}
		if strings.Contains(plan, "Seq Scan") {
			t.Errorf("the feed scans a table:\n%s", plan)
		}
	}
}
