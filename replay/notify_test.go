package replay_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/testsupport"
	"github.com/roomcast/roomcast/projections"
	"github.com/roomcast/roomcast/replay"
)

func TestMain(m *testing.M) { testsupport.Main(m) }

func project(t *testing.T, p *projections.Projector, events ...*chattest.Event) {
	t.Helper()
	for _, e := range events {
		rs, err := p.ProjectBatch(context.Background(), []projections.Item{{Env: e.Envelope(t), Origin: projections.Origin{Partition: -1}}})
		if err != nil || rs[0].Err != nil {
			t.Fatalf("project %s: %v %v", e.Type, err, rs)
		}
	}
}

// settleAll marks every pending delivery accepted, as Pusher would.
func settleAll(t *testing.T, o *projections.Outbox) {
	t.Helper()
	ds, err := o.Pending(context.Background(), 10000)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, d := range ds {
		ids = append(ids, d.ID)
	}
	if err := o.MarkDelivered(context.Background(), ids); err != nil {
		t.Fatal(err)
	}
}

func pendingOf(t *testing.T, o *projections.Outbox, room string) []domain.Delivery {
	t.Helper()
	ds, err := o.Pending(context.Background(), 10000)
	if err != nil {
		t.Fatal(err)
	}
	var out []domain.Delivery
	for _, d := range ds {
		if d.RoomID == room {
			out = append(out, d)
		}
	}
	return out
}

func notify(t *testing.T, db *gorm.DB, cfg replay.NotifyConfig) replay.NotifySummary {
	t.Helper()
	cfg.DB = db
	s, err := replay.Notify(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Notify writes a room's stored events back into the outbox as the feed
// rebuilds them, in seq order and with rising ids, in chunks; the read
// models stay as they were; a dry run writes nothing; -from-seq starts
// later; another room is untouched.
func TestNotifyOwesTheRoomsHistoryAgainInSeqOrder(t *testing.T) {
	db, _ := testsupport.Database(t, 4)
	p, o := projections.NewProjector(db, nil, nil), projections.NewOutbox(db)
	project(t, p, chattest.MemberJoined("room-1", "u-1"), chattest.MessageCreated("room-1", "m-1", strings.Repeat("語", 4000)),
		chattest.MessageEdited("room-1", "m-1", "edited"), chattest.MessageCreated("room-1", "m-2", "secret"),
		chattest.RoomsNotification([]string{"room-1"}, "not sequenced"), chattest.MessageDeleted("room-1", "m-2"),
		chattest.MemberLeft("room-1", "u-1"), chattest.MessageCreated("room-2", "m-3", "other room"))
	settleAll(t, o)
	var before []projections.Message
	db.Order("id").Find(&before)

	dry := notify(t, db, replay.NotifyConfig{Rooms: []string{"room-1"}, DryRun: true})
	if dry.Owed() != 6 || len(pendingOf(t, o, "room-1")) != 0 {
		t.Fatalf("dry run: %+v, %d pending; want 6 counted, none written", dry.Rooms, len(pendingOf(t, o, "room-1")))
	}
	s := notify(t, db, replay.NotifyConfig{Rooms: []string{"room-1"}, Chunk: 4})
	if r := s.Rooms[0]; r.Owed != 6 || r.Read != 6 || r.FirstSeq != 1 || r.LastOwedSeq != 6 || r.LastSeq != 6 {
		t.Fatalf("notify: %+v", r)
	}
	feed, _, _, err := projections.RoomFeed(context.Background(), db, "room-1", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	owed := pendingOf(t, o, "room-1")
	if len(owed) != len(feed) {
		t.Fatalf("%d deliveries owed again, feed has %d", len(owed), len(feed))
	}
	for i, d := range owed {
		if d.Seq != feed[i].Seq || d.Name != feed[i].Event || d.Data != feed[i].Data || d.SocketID != "" ||
			len(d.Channels) != 1 || d.Channels[0] != "private-room-room-1" || i > 0 && d.ID <= owed[i-1].ID {
			t.Errorf("owed again %d: id %d seq %d %s on %v %s; feed %d %s %s", i, d.ID, d.Seq, d.Name, d.Channels, d.Data, feed[i].Seq, feed[i].Event, feed[i].Data)
		}
	}
	if !owed[1].Truncated || strings.Contains(owed[3].Data, "secret") {
		t.Errorf("truncated %v; deleted text owed again: %s", owed[1].Truncated, owed[3].Data)
	}
	if n := len(pendingOf(t, o, "room-2")); n != 0 {
		t.Errorf("room-2: %d owed", n)
	}
	var after []projections.Message
	db.Order("id").Find(&after)
	if len(after) != len(before) {
		t.Fatalf("messages: %d, were %d", len(after), len(before))
	}
	for i := range after {
		if after[i].Content != before[i].Content || after[i].Seq != before[i].Seq || (after[i].DeletedAt == nil) != (before[i].DeletedAt == nil) {
			t.Errorf("message %s changed: %+v, was %+v", after[i].ID, after[i], before[i])
		}
	}
	var last int64
	db.Raw(`SELECT last_seq FROM rooms WHERE room_id = 'room-1'`).Scan(&last)
	if last != 6 {
		t.Errorf("room-1 last seq %d after notify, want 6", last)
	}

	settleAll(t, o)
	s = notify(t, db, replay.NotifyConfig{Rooms: []string{"room-1", "room-2", "no-such-room"}, FromSeq: 5})
	if s.Rooms[0].Owed != 2 || s.Rooms[0].FirstSeq != 5 || s.Rooms[1].Owed != 0 || s.Rooms[2].Owed != 0 || s.Rooms[2].LastSeq != 0 {
		t.Errorf("-from-seq 5: %+v", s.Rooms)
	}
}

// Events whose delivery the outbox still owes are not owed twice; -since
// and -until select by when events were recorded.
func TestNotifySkipsWhatIsStillOwedAndSelectsByTime(t *testing.T) {
	db, _ := testsupport.Database(t, 4)
	p, o := projections.NewProjector(db, nil, nil), projections.NewOutbox(db)
	project(t, p, chattest.MemberJoined("room-1", "u-1"), chattest.MessageCreated("room-1", "m-1", "one"))
	settleAll(t, o)
	project(t, p, chattest.MessageCreated("room-1", "m-2", "two")) // still owed
	s := notify(t, db, replay.NotifyConfig{Rooms: []string{"room-1"}})
	if r := s.Rooms[0]; r.Read != 3 || r.Owed != 2 || r.StillOwed != 1 || r.LastOwedSeq != 2 {
		t.Errorf("notify with seq 3 still owed: %+v", r)
	}
	if n := len(pendingOf(t, o, "room-1")); n != 3 {
		t.Errorf("%d owed, want 3 (seq 3 once)", n)
	}
	settleAll(t, o)
	if err := db.Exec(`UPDATE events SET recorded_at = '2026-01-01T00:00:00Z'::timestamptz + seq * interval '1 hour' WHERE room_id = 'room-1'`).Error; err != nil {
		t.Fatal(err)
	}
	at := func(h int) time.Time { return time.Date(2026, 1, 1, h, 0, 0, 0, time.UTC) }
	s = notify(t, db, replay.NotifyConfig{Rooms: []string{"room-1"}, Since: at(2), Until: at(3), DryRun: true})
	if r := s.Rooms[0]; r.Read != 1 || r.FirstSeq != 2 || r.LastOwedSeq != 2 {
		t.Errorf("since 02:00 until 03:00: %+v, want seq 2 alone", r)
	}
	s = notify(t, db, replay.NotifyConfig{Rooms: []string{"room-1"}, Since: at(2)})
	if r := s.Rooms[0]; r.Owed != 2 || r.FirstSeq != 2 || r.LastOwedSeq != 3 {
		t.Errorf("since 02:00: %+v, want seqs 2-3", r)
	}
}

// A message deleted while its text is owed again is redacted in the
// outbox like a live delivery: notify names the new row in its event.
func TestNotifyOwedTextIsRedactedByALaterDelete(t *testing.T) {
	db, _ := testsupport.Database(t, 4)
	p, o := projections.NewProjector(db, nil, nil), projections.NewOutbox(db)
	project(t, p, chattest.MessageCreated("room-1", "m-1", "secret"), chattest.MessageEdited("room-1", "m-1", "secret 2"))
	settleAll(t, o)
	notify(t, db, replay.NotifyConfig{Rooms: []string{"room-1"}})
	project(t, p, chattest.MessageDeleted("room-1", "m-1"))
	owed := pendingOf(t, o, "room-1")
	if len(owed) != 3 {
		t.Fatalf("%d owed, want 3", len(owed))
	}
	for _, d := range owed {
		if strings.Contains(d.Data, "secret") {
			t.Errorf("seq %d owed with the deleted text: %s", d.Seq, d.Data)
		}
	}
}
