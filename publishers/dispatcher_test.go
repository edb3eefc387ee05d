package publishers_test

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pusher/pusher-http-go/v5"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/fakepusher"
	"github.com/roomcast/roomcast/projections"
	"github.com/roomcast/roomcast/publishers"
)

var isoMillis = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$`)

// Every event type reaches Pusher on the contract's channel, under the
// contract's event name, with exactly the contract's payload fields.
func TestPayloadsOfEveryEventType(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const room = "room-p"
	roomCh := domain.RoomChannel(room)
	if roomCh != "private-room-room-p" {
		t.Fatalf("RoomChannel(%q) = %q", room, roomCh)
	}

	content := `<b>hi</b> & "quoted" ünï 😀 </script>`
	created := chattest.MessageCreated(room, "m-1", content).
		With("createdAt", "2026-11-27T09:00:00.123+01:00"). // not UTC: must come out as UTC
		With("socketId", "123.456")
	edited := chattest.MessageEdited(room, "m-1", "<i>edited</i>").With("editedAt", "2026-11-27T08:00:01.5Z")
	for _, e := range []*chattest.Event{created, edited} {
		if out := f.project(e); out != projections.Applied {
			t.Fatalf("project %s: %v, want applied", e.Type, out)
		}
	}
	// The delete below blanks the content of deliveries still pending: let
	// these two go out first so that their payloads are deterministic.
	f.waitEvents(2)
	f.waitSettled()

	deleted := chattest.MessageDeleted(room, "m-1").With("deletedAt", "2026-11-27T08:00:02Z")
	joined := chattest.MemberJoined(room, "u-7")
	joinedNoAvatar := chattest.MemberJoined(room, "u-8").With("userAvatar", nil) // missing = null
	left := chattest.MemberLeft(room, "u-7").With("leftAt", "2026-11-27T08:00:03.999Z")
	userNote := chattest.UserNotification([]string{"u-7", "u-8", "u-7"}, "Hello <you> & co")
	roomsNote := chattest.RoomsNotification([]string{room}, "Rooms")
	const noteURL = "https://example.com/r?a=1&b=<2>"
	roomsNote.Data["notification"].(map[string]any)["url"] = noteURL
	for _, e := range []*chattest.Event{deleted, joined, joinedNoAvatar, left, userNote, roomsNote} {
		if out := f.project(e); out != projections.Applied {
			t.Fatalf("project %s: %v, want applied", e.Type, out)
		}
	}
	f.waitEvents(9) // 6 room events, 1 rooms notification, 2 user channels
	f.waitSettled()
	if n := len(f.srv.Events()); n != 9 {
		t.Errorf("Pusher got %d events, want 9: %+v", n, f.srv.Events())
	}

	type want struct {
		name string
		data map[string]any
	}
	roomWant := []want{
		{"new-message", map[string]any{
			"id": "m-1", "content": content, "authorId": "u-1", "authorName": "Ada", "authorAvatar": nil,
			"createdAt": "2026-11-27T08:00:00.123Z", "roomId": room, "seq": 1,
		}},
		{"message-edited", map[string]any{
			"id": "m-1", "content": "<i>edited</i>", "editedAt": "2026-11-27T08:00:01.500Z", "roomId": room, "seq": 2,
		}},
		{"message-deleted", map[string]any{
			"id": "m-1", "deletedAt": "2026-11-27T08:00:02.000Z", "roomId": room, "seq": 3,
		}},
		{"user-joined", map[string]any{
			"userId": "u-7", "userName": "User u-7", "userAvatar": "https://example.com/u-7.png",
			"joinedAt": joined.Data["joinedAt"], "roomId": room, "seq": 4,
		}},
		{"user-joined", map[string]any{
			"userId": "u-8", "userName": "User u-8", "userAvatar": nil,
			"joinedAt": joinedNoAvatar.Data["joinedAt"], "roomId": room, "seq": 5,
		}},
		{"user-left", map[string]any{
			"userId": "u-7", "leftAt": "2026-11-27T08:00:03.999Z", "roomId": room, "seq": 6,
		}},
	}
	var roomEvents []fakepusher.Event
	var roomNotes []fakepusher.Event
	for _, e := range f.srv.EventsOn(roomCh) {
		if e.Name == "notification" {
			roomNotes = append(roomNotes, e)
		} else {
			roomEvents = append(roomEvents, e)
		}
	}
	if len(roomEvents) != len(roomWant) {
		t.Fatalf("%s got %d room events, want %d: %+v", roomCh, len(roomEvents), len(roomWant), roomEvents)
	}
	for i, w := range roomWant {
		got := roomEvents[i]
		if got.Name != w.name {
			t.Errorf("room event #%d: Pusher event %q, want %q", i+1, got.Name, w.name)
		}
		if g, wnt := canonical(t, got.Data), canonical(t, w.data); g != wnt {
			t.Errorf("room event #%d (%s): data\n got  %s\n want %s", i+1, w.name, g, wnt)
		}
		for k, v := range payload(t, got) {
			if strings.HasSuffix(k, "At") && !isoMillis.MatchString(fmt.Sprint(v)) {
				t.Errorf("room event #%d (%s): %s = %v, want UTC with milliseconds like 2026-11-27T08:00:00.000Z", i+1, w.name, k, v)
			}
		}
		wantSocket := ""
		if i == 0 {
			wantSocket = "123.456" // the sender's connection is excluded
		}
		if got.SocketID != wantSocket {
			t.Errorf("room event #%d (%s): socket_id %q, want %q", i+1, w.name, got.SocketID, wantSocket)
		}
	}

	// No HTML escaping: '<', '>' and '&' are single bytes in the data string.
	if len(roomEvents) > 0 {
		raw := roomEvents[0].Data
		if !strings.Contains(raw, `<b>hi</b> & \"quoted\" ünï 😀 </script>`) {
			t.Errorf("new-message data does not carry the content unescaped: %s", raw)
		}
		for _, esc := range []string{`\u003c`, `\u003e`, `\u0026`} {
			if strings.Contains(raw, esc) {
				t.Errorf("new-message data HTML-escapes (%s): %s", esc, raw)
			}
		}
	}

	// Rooms notification: on the room channel, no seq, url present.
	rn := roomsNote.Data["notification"].(map[string]any)
	if len(roomNotes) != 1 {
		t.Fatalf("%s got %d notifications, want 1", roomCh, len(roomNotes))
	}
	wantRoomNote := map[string]any{"id": rn["id"], "type": "mention", "title": "Rooms", "body": "body of Rooms", "url": noteURL}
	if g, w := canonical(t, roomNotes[0].Data), canonical(t, wantRoomNote); g != w {
		t.Errorf("rooms notification data\n got  %s\n want %s", g, w)
	}
	if !strings.Contains(roomNotes[0].Data, `&b=<2>`) {
		t.Errorf("rooms notification url is HTML-escaped: %s", roomNotes[0].Data)
	}

	// User notification: once per distinct user, no url key when unset, no seq.
	un := userNote.Data["notification"].(map[string]any)
	wantUserNote := map[string]any{"id": un["id"], "type": "mention", "title": "Hello <you> & co", "body": "body of Hello <you> & co"}
	for _, user := range []string{"u-7", "u-8"} {
		ch := domain.UserChannel(user)
		if ch != "private-user-"+user {
			t.Fatalf("UserChannel(%q) = %q", user, ch)
		}
		evs := f.srv.EventsOn(ch)
		if len(evs) != 1 {
			t.Errorf("%s got %d events, want 1 (duplicates in userIds are delivered once): %+v", ch, len(evs), evs)
			continue
		}
		if evs[0].Name != "notification" {
			t.Errorf("%s: Pusher event %q, want notification", ch, evs[0].Name)
		}
		if g, w := canonical(t, evs[0].Data), canonical(t, wantUserNote); g != w {
			t.Errorf("%s: data\n got  %s\n want %s", ch, g, w)
		}
		if !strings.Contains(evs[0].Data, `Hello <you> & co`) {
			t.Errorf("%s: title is HTML-escaped: %s", ch, evs[0].Data)
		}
	}
	// Both user channels in one trigger, not one call per user.
	for _, c := range f.calls("events") {
		if c.Status == 200 && c.Channels == 1 {
			t.Errorf("a notification went out as a one-channel trigger: %+v", c)
		}
	}
}

// Pending deliveries go out in batches of at most 10 events, and each room's
// events reach Pusher in seq order.
func TestBatchesAndKeepsRoomOrder(t *testing.T) {
	t.Parallel()
	f := newIdleFixture(t)
	rooms := []string{"room-a", "room-b", "room-c"}
	const perRoom = 20
	f.projectRooms(rooms, perRoom, func(room string, i int) *chattest.Event {
		return chattest.MessageCreated(room, fmt.Sprintf("%s-m%d", room, i), fmt.Sprintf("message %d", i))
	})
	if b := f.backlog(); b.Pending != 60 {
		t.Fatalf("backlog before dispatching: %+v, want 60 pending", b)
	}
	f.start()
	f.waitEvents(60)
	f.waitSettled()

	if n := len(f.srv.Events()); n != 60 {
		t.Errorf("Pusher got %d events, want 60", n)
	}
	for _, room := range rooms {
		ch := domain.RoomChannel(room)
		if got := seqs(t, f.srv, ch); !slices.Equal(got, oneToN(perRoom)) {
			t.Errorf("%s: seqs %v, want 1..%d in order", ch, got, perRoom)
		}
		for i, e := range f.srv.EventsOn(ch) {
			if c := payload(t, e)["content"]; c != fmt.Sprintf("message %d", i+1) {
				t.Errorf("%s event #%d: content %q, want %q", ch, i+1, c, fmt.Sprintf("message %d", i+1))
			}
		}
	}
	batches := f.calls("batch_events")
	for _, c := range batches {
		if c.Status != 200 {
			t.Errorf("batch call answered %d: %+v", c.Status, c)
		}
		if c.Events > domain.MaxPusherBatchEvents {
			t.Errorf("batch call carried %d events, at most 10 allowed", c.Events)
		}
	}
	if maxCalls := 60/10 + 3; len(batches) > maxCalls {
		t.Errorf("60 events took %d batch calls, want at most %d (batches of up to 10)", len(batches), maxCalls)
	}
	if n := len(f.calls("events")); n != 0 {
		t.Errorf("%d calls to /events for single-channel deliveries, want 0", n)
	}
}

// A notification to many channels is one trigger per 100 channels.
func TestNotificationToManyChannels(t *testing.T) {
	t.Parallel()
	f := newFixture(t)

	rooms := chattest.IDs("room", 250)
	withDuplicates := append(append([]string{}, rooms...), rooms[:30]...)
	f.project(chattest.RoomsNotification(withDuplicates, "to many rooms"))
	f.waitEvents(250)
	f.waitSettled()
	checkFanout(t, f, rooms, domain.RoomChannel, []int{100, 100, 50})

	f.srv.Reset()
	users := chattest.IDs("user", 1000)
	f.project(chattest.UserNotification(users, "to many users"))
	f.waitEvents(1000)
	f.waitSettled()
	checkFanout(t, f, users, domain.UserChannel, []int{100, 100, 100, 100, 100, 100, 100, 100, 100, 100})
}

func checkFanout(t *testing.T, f *fixture, ids []string, channel func(string) string, wantChannels []int) {
	t.Helper()
	var got []int
	for _, c := range f.calls("events") {
		if c.Status != 200 {
			t.Errorf("trigger answered %d: %+v", c.Status, c)
			continue
		}
		got = append(got, c.Channels)
	}
	// The triggers of one notification have no order among themselves: they run concurrently.
	slices.Sort(got)
	wantChannels = slices.Sorted(slices.Values(wantChannels))
	if !slices.Equal(got, wantChannels) {
		t.Errorf("triggers carried %v channels, want %v", got, wantChannels)
	}
	if n := len(f.calls("batch_events")); n != 0 {
		t.Errorf("%d batch calls, want none (a many-channel notification is one trigger per 100 channels)", n)
	}
	events := f.srv.Events()
	if len(events) != len(ids) {
		t.Errorf("Pusher got %d events, want %d (one per distinct channel)", len(events), len(ids))
	}
	seen := map[string]int{}
	for _, e := range events {
		seen[e.Channel]++
		if e.Name != "notification" || e.Data != events[0].Data {
			t.Errorf("event on %s: %s %s, want the same notification everywhere", e.Channel, e.Name, e.Data)
			break
		}
	}
	for _, id := range ids {
		if n := seen[channel(id)]; n != 1 {
			t.Errorf("%s got %d events, want 1", channel(id), n)
		}
	}
}

// Projection does not depend on Pusher; what piles up during an outage is
// delivered, in each room's order, once Pusher is back.
func TestPusherOutage(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.srv.SetDown(true)

	rooms := chattest.IDs("room", 10)
	const perRoom = 30
	start := time.Now()
	f.projectRooms(rooms, perRoom, func(room string, i int) *chattest.Event {
		return chattest.MessageCreated(room, fmt.Sprintf("%s-m%d", room, i), fmt.Sprintf("message %d", i))
	})
	t.Logf("projected 300 events in %v while Pusher was down", time.Since(start))

	f.eventually("a call refused with 503", func() bool {
		return slices.ContainsFunc(f.srv.Calls(), func(c fakepusher.Call) bool { return c.Status == 503 })
	})
	if n := len(f.srv.Events()); n != 0 {
		t.Fatalf("Pusher recorded %d events while down", n)
	}
	if b := f.backlog(); b.Pending != 300 || b.Parked != 0 {
		t.Fatalf("backlog during the outage: %+v, want 300 pending, 0 parked", b)
	}
	var failed int64
	if err := f.db.Raw(`SELECT count(*) FROM deliveries WHERE attempts > 0 AND last_error LIKE '%503%'`).Scan(&failed).Error; err != nil {
		t.Fatal(err)
	}
	if failed == 0 {
		t.Errorf("no delivery records the failed attempt (attempts, last_error)")
	}

	f.srv.SetDown(false)
	f.waitEvents(300)
	if b := f.waitSettled(); b.Parked != 0 {
		t.Errorf("backlog after the outage: %+v, want nothing parked", b)
	}
	if n := len(f.srv.Events()); n != 300 {
		t.Errorf("Pusher got %d events, want 300", n)
	}
	for _, room := range rooms {
		ch := domain.RoomChannel(room)
		if got := seqs(t, f.srv, ch); !slices.Equal(got, oneToN(perRoom)) {
			t.Errorf("%s: seqs %v, want 1..%d in order", ch, got, perRoom)
		}
	}
}

// Bursts of 503 while events stream in delay deliveries but neither lose nor reorder them.
func TestRetriesBurstsOf503(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.srv.FailNext(3, 503)
	rooms := []string{"room-a", "room-b"}
	f.projectRooms(rooms, 25, func(room string, i int) *chattest.Event {
		return chattest.MessageCreated(room, fmt.Sprintf("%s-m%d", room, i), fmt.Sprintf("message %d", i))
	})
	f.waitEvents(50)
	if b := f.waitSettled(); b.Parked != 0 {
		t.Errorf("backlog: %+v, want nothing parked", b)
	}
	if n := len(f.srv.Events()); n != 50 {
		t.Errorf("Pusher got %d events, want 50", n)
	}
	for _, room := range rooms {
		ch := domain.RoomChannel(room)
		if got := seqs(t, f.srv, ch); !slices.Equal(got, oneToN(25)) {
			t.Errorf("%s: seqs %v, want 1..25 in order", ch, got)
		}
	}
	failed := 0
	for _, c := range f.srv.Calls() {
		if c.Status == 503 {
			failed++
		}
	}
	if failed != 3 {
		t.Errorf("%d calls answered 503, want the 3 injected", failed)
	}
}

// An event Pusher rejects (413) is parked with the reason; the rest of its
// batch and its room's later events are delivered, in order.
func TestRejectedEventIsParkedOthersFlow(t *testing.T) {
	t.Parallel()
	f := newIdleFixture(t)
	f.srv.RejectWhen(func(e fakepusher.Event) int {
		if strings.Contains(e.Data, "POISON") {
			return 413
		}
		return 0
	})
	var poison *chattest.Event
	for i := 1; i <= 10; i++ {
		content := fmt.Sprintf("a %d", i)
		if i == 4 {
			content = "POISON pill"
		}
		a := chattest.MessageCreated("room-a", fmt.Sprintf("a-%d", i), content)
		if i == 4 {
			poison = a
		}
		f.project(a)
		f.project(chattest.MessageCreated("room-b", fmt.Sprintf("b-%d", i), fmt.Sprintf("b %d", i)))
	}
	f.start() // the poison event is in the first batch of 10

	f.eventually("the poison event parked and the rest delivered", func() bool {
		b := f.backlog()
		return b.Pending == 0 && b.Parked == 1
	})
	f.waitEvents(19)
	if got, want := seqs(t, f.srv, "private-room-room-a"), []int64{1, 2, 3, 5, 6, 7, 8, 9, 10}; !slices.Equal(got, want) {
		t.Errorf("room-a seqs %v, want %v", got, want)
	}
	if got := seqs(t, f.srv, "private-room-room-b"); !slices.Equal(got, oneToN(10)) {
		t.Errorf("room-b seqs %v, want 1..10", got)
	}
	if n := len(f.srv.Events()); n != 19 {
		t.Errorf("Pusher got %d events, want 19", n)
	}
	rows := f.deliveries(poison.ID)
	if len(rows) != 1 {
		t.Fatalf("poison event has %d deliveries, want 1", len(rows))
	}
	r := rows[0]
	if r.ParkedAt == nil || r.DeliveredAt != nil {
		t.Errorf("poison delivery: parked_at %v, delivered_at %v; want parked, not delivered", r.ParkedAt, r.DeliveredAt)
	}
	if r.ParkedReason == nil || !strings.Contains(*r.ParkedReason, "413") {
		t.Errorf("poison delivery: parked_reason %v, want it to mention 413", deref(r.ParkedReason))
	}
	refused := slices.ContainsFunc(f.srv.Calls(), func(c fakepusher.Call) bool { return c.Status == 413 })
	if !refused {
		t.Errorf("no call was refused with 413: the rule never fired")
	}
}

// 401 marks the dispatcher degraded and keeps the deliveries (neither parked
// nor lost); they go out once Pusher accepts the calls again.
func TestUnauthorizedKeepsDeliveriesAndDegrades(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if err := f.dispatcher.Degraded(); err != nil {
		t.Fatalf("Degraded() = %v before any call", err)
	}
	f.srv.FailNext(1<<30, 401)
	for i := 1; i <= 5; i++ {
		f.project(chattest.MessageCreated("room-a", fmt.Sprintf("m-%d", i), fmt.Sprintf("message %d", i)))
	}
	f.eventually("Degraded() to report the refusal", func() bool { return f.dispatcher.Degraded() != nil })
	if err := f.dispatcher.Degraded(); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("Degraded() = %v, want it to name status 401", err)
	}
	f.eventually("the dispatcher to keep retrying (3 refused calls)", func() bool {
		n := 0
		for _, c := range f.srv.Calls() {
			if c.Status == 401 {
				n++
			}
		}
		return n >= 3
	})
	if n := len(f.srv.Events()); n != 0 {
		t.Fatalf("Pusher recorded %d events while refusing", n)
	}
	if b := f.backlog(); b.Pending != 5 || b.Parked != 0 {
		t.Fatalf("backlog while refused: %+v, want 5 pending and none parked", b)
	}

	f.srv.FailNext(0, 0)
	f.waitEvents(5)
	f.waitSettled()
	f.eventually("Degraded() to clear after an accepted call", func() bool { return f.dispatcher.Degraded() == nil })
	if got := seqs(t, f.srv, "private-room-room-a"); !slices.Equal(got, oneToN(5)) {
		t.Errorf("seqs %v, want 1..5", got)
	}

	// A short burst (2 refusals) while an event arrives: delivered after it.
	f.srv.FailNext(2, 401)
	f.project(chattest.MessageCreated("room-a", "m-6", "message 6"))
	f.waitEvents(6)
	if b := f.waitSettled(); b.Parked != 0 {
		t.Errorf("backlog: %+v, want nothing parked", b)
	}
	f.eventually("Degraded() to clear again", func() bool { return f.dispatcher.Degraded() == nil })
	if got := seqs(t, f.srv, "private-room-room-a"); !slices.Equal(got, oneToN(6)) {
		t.Errorf("seqs %v, want 1..6", got)
	}
}

// A message too large for Pusher's 10 KB goes out truncated; Postgres keeps the full text.
func TestOversizedMessageIsTruncatedToFit(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	full := strings.Repeat("漢", 4000) // 12,000 bytes of UTF-8
	created := chattest.MessageCreated("room-big", "m-big", full)
	f.project(created)
	f.waitEvents(1)
	f.waitSettled()
	checkTruncated(t, f.srv.Events()[0], "new-message", full, 1)
	if m := f.message("m-big"); m.Content != full {
		t.Errorf("messages.content has %d characters, want the full 4000", utf8.RuneCountInString(m.Content))
	}
	if rows := f.deliveries(created.ID); len(rows) != 1 || !rows[0].Truncated {
		t.Errorf("deliveries of the message: %+v, want one marked truncated", rows)
	}

	fullEdit := strings.Repeat("字", 4000)
	f.project(chattest.MessageEdited("room-big", "m-big", fullEdit))
	f.waitEvents(2)
	if b := f.waitSettled(); b.Parked != 0 {
		t.Errorf("backlog: %+v, want nothing parked", b)
	}
	checkTruncated(t, f.srv.Events()[1], "message-edited", fullEdit, 2)
	if m := f.message("m-big"); m.Content != fullEdit {
		t.Errorf("messages.content has %d characters after the edit, want the full 4000", utf8.RuneCountInString(m.Content))
	}
}

func checkTruncated(t *testing.T, e fakepusher.Event, name, full string, seq int) {
	t.Helper()
	if e.Name != name {
		t.Fatalf("Pusher event %q, want %q", e.Name, name)
	}
	if len(e.Data) > domain.MaxPusherDataBytes {
		t.Errorf("%s data is %d bytes, more than 10240", name, len(e.Data))
	}
	if len(e.Data)+len("漢") <= domain.MaxPusherDataBytes {
		t.Errorf("%s data is %d bytes: one more character would still fit (not the longest prefix)", name, len(e.Data))
	}
	p := payload(t, e)
	if p["truncated"] != true {
		t.Errorf("%s payload truncated = %v, want true", name, p["truncated"])
	}
	content, _ := p["content"].(string)
	if content == "" || !strings.HasPrefix(full, content) || !utf8.ValidString(content) {
		t.Errorf("%s content (%d characters) is not a non-empty prefix of the original", name, utf8.RuneCountInString(content))
	}
	if p["seq"] != float64(seq) {
		t.Errorf("%s seq = %v, want %d", name, p["seq"], seq)
	}
}

// A notification that cannot fit 10 KB even with its body emptied is parked
// when projected and never sent; everything else still flows.
func TestNotificationTooLargeIsParkedAtProjection(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	huge := chattest.UserNotification(chattest.IDs("user", 150), "huge url")
	note := huge.Data["notification"].(map[string]any)
	note["url"] = strings.Repeat("\u0001", domain.MaxNotificationURL) // each written as \u0001: 12 KB
	hugeID := note["id"].(string)
	if out := f.project(huge); out != projections.Applied {
		t.Fatalf("project: %v, want applied", out)
	}
	rows := f.deliveries(huge.ID)
	if len(rows) != 2 {
		t.Fatalf("the notification has %d deliveries, want 2 (150 channels)", len(rows))
	}
	for _, r := range rows {
		if r.ParkedAt == nil || r.DeliveredAt != nil {
			t.Errorf("delivery %d: parked_at %v, delivered_at %v; want parked at projection", r.ID, r.ParkedAt, r.DeliveredAt)
		}
		if r.ParkedReason == nil || !strings.Contains(*r.ParkedReason, "10 KB") {
			t.Errorf("delivery %d: parked_reason %q, want it to mention 10 KB", r.ID, deref(r.ParkedReason))
		}
	}

	f.project(chattest.MessageCreated("room-x", "m-x", "still flowing"))
	f.project(chattest.UserNotification([]string{"user-1"}, "small"))
	f.waitEvents(2)
	if b := f.waitSettled(); b.Parked != 2 {
		t.Errorf("backlog: %+v, want the 2 too-large deliveries parked", b)
	}
	for _, e := range f.srv.Events() {
		if strings.Contains(e.Data, hugeID) {
			t.Errorf("the too-large notification was sent on %s", e.Channel)
		}
	}
	if n := len(f.srv.Events()); n != 2 {
		t.Errorf("Pusher got %d events, want 2", n)
	}
	for _, c := range f.srv.Calls() {
		if c.Status != 200 {
			t.Errorf("a call was refused (%d): the too-large notification was sent", c.Status)
		}
	}
	for _, r := range f.deliveries(huge.ID) {
		if r.Attempts != 0 {
			t.Errorf("delivery %d: %d attempts, want 0 (never sent)", r.ID, r.Attempts)
		}
	}
}

// A message deleted before its new-message and message-edited went out is
// sent without its text, marked "redacted": true, in the shape and
// formatting of every payload, and no longer truncated; an edit arriving
// after the delete sends nothing.
func TestDeleteBeforeDeliveryBlanksPendingContent(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.srv.SetDown(true)
	created := chattest.MessageCreated("room-d", "m-d", "secret <text>")
	edited := chattest.MessageEdited("room-d", "m-d", "secret & edited")
	big := chattest.MessageCreated("room-d", "m-big", strings.Repeat("秘", 4000)) // truncated
	f.project(created)
	f.project(edited)
	f.project(big)
	f.project(chattest.MessageDeleted("room-d", "m-d"))
	f.project(chattest.MessageDeleted("room-d", "m-big"))
	if out := f.project(chattest.MessageEdited("room-d", "m-d", "secret too late")); out != projections.Unchanged {
		t.Errorf("an edit after the delete: %v, want unchanged", out)
	}
	// A call that reaches Pusher after the deletes committed and is refused:
	// then no other call of the room is in flight (one at a time per room),
	// and what the dispatcher sends next it reads after that refusal, so
	// after the deletes. (A refusal from before the deletes is not enough: a
	// call it raced with could carry the text read before them and arrive
	// once Pusher is back.)
	deleted := time.Now()
	f.eventually("a call refused with 503 after the deletes", func() bool {
		return slices.ContainsFunc(f.srv.Calls(), func(c fakepusher.Call) bool { return c.Status == 503 && c.At.After(deleted) })
	})
	f.srv.SetDown(false)
	f.waitEvents(5)
	f.waitSettled()

	evs := f.srv.EventsOn("private-room-room-d")
	if len(evs) != 5 {
		t.Fatalf("got %d events, want 5", len(evs))
	}
	wantNames := []string{"new-message", "message-edited", "new-message", "message-deleted", "message-deleted"}
	for i, e := range evs {
		if e.Name != wantNames[i] {
			t.Errorf("event #%d: %s, want %s", i+1, e.Name, wantNames[i])
		}
		if strings.Contains(e.Data, "secret") || strings.Contains(e.Data, "秘") {
			t.Errorf("event #%d (%s) carries the deleted text: %.200s", i+1, e.Name, e.Data)
		}
	}
	at := func(e *chattest.Event, field string) string { return e.Data[field].(string) }
	want := []string{
		`{"id":"m-d","content":"","authorId":"u-1","authorName":"Ada","authorAvatar":null,"createdAt":"` + at(created, "createdAt") + `","roomId":"room-d","seq":1,"redacted":true}`,
		`{"id":"m-d","content":"","editedAt":"` + at(edited, "editedAt") + `","roomId":"room-d","seq":2,"redacted":true}`,
		`{"id":"m-big","content":"","authorId":"u-1","authorName":"Ada","authorAvatar":null,"createdAt":"` + at(big, "createdAt") + `","roomId":"room-d","seq":3,"redacted":true}`,
	}
	for i, w := range want {
		if evs[i].Data != w {
			t.Errorf("%s #%d of a deleted message:\n got  %s\n want %s", evs[i].Name, i+1, evs[i].Data, w)
		}
	}
}

// signalling wraps the real client and reports when a batch call starts.
type signalling struct {
	publishers.Pusher
	entered chan struct{}
	calls   atomic.Int32
}

func (s *signalling) TriggerBatch(batch []pusher.Event) (*pusher.TriggerBatchChannelsList, error) {
	s.calls.Add(1)
	select {
	case s.entered <- struct{}{}:
	default:
	}
	return s.Pusher.TriggerBatch(batch)
}

// Stopping the dispatcher during a call finishes and settles that call: a
// restarted dispatcher does not send it again.
func TestStopFinishesAndSettlesCallInFlight(t *testing.T) {
	t.Parallel()
	f := newIdleFixture(t)
	for i := 1; i <= 5; i++ {
		f.project(chattest.MessageCreated("room-a", fmt.Sprintf("m-%d", i), fmt.Sprintf("message %d", i)))
	}
	f.srv.SetLatency(300 * time.Millisecond)
	sig := &signalling{Pusher: f.client, entered: make(chan struct{}, 1)}
	f.useDispatcher(sig)
	stop := f.start()
	select {
	case <-sig.entered:
	case <-time.After(waitLimit):
		t.Fatal("the dispatcher made no call")
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v, want nil on its context's end", err)
	}
	if n := len(f.srv.Events()); n != 5 {
		t.Errorf("Pusher got %d events from the call in flight, want 5", n)
	}
	if b := f.backlog(); b.Pending != 0 {
		t.Errorf("backlog after stopping: %+v, want the call in flight settled (0 pending)", b)
	}

	f.srv.SetLatency(0)
	f.useDispatcher(f.client)
	f.start()
	f.project(chattest.MessageCreated("room-a", "m-6", "message 6"))
	f.waitEvents(6)
	f.waitSettled()
	if got := seqs(t, f.srv, "private-room-room-a"); !slices.Equal(got, oneToN(6)) {
		t.Errorf("seqs %v, want 1..6 each once (no re-send of the settled call)", got)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// Two workers on one database (each with its own pool and outbox): one
// dispatches, so no delivery is sent twice and no room is reordered; when it
// stops, the other takes over.
func TestTwoDispatchersOneDatabase(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// Let the first dispatcher take the lead before the second one starts.
	f.project(chattest.MessageCreated("room-0", "m-0", "first"))
	f.waitEvents(1)
	f.waitSettled()

	db2, err := projections.Open(t.Context(), f.dbURL, 5)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = projections.Close(db2) })
	client2 := publishers.NewClient(publishers.ClientConfig{AppID: appID, Key: appKey, Secret: appSecret, Host: f.srv.Host()})
	second := publishers.NewDispatcher(projections.NewOutbox(db2).KeepDelivered(), client2, dispatcherConfig)
	run(t, second)

	rooms := chattest.IDs("room", 5)
	f.projectRooms(rooms, 20, func(room string, i int) *chattest.Event {
		return chattest.MessageCreated(room, fmt.Sprintf("%s-m%d", room, i), fmt.Sprintf("message %d", i))
	})
	f.waitEvents(101)
	f.waitSettled()
	if n := len(f.srv.Events()); n != 101 {
		t.Errorf("Pusher got %d events, want 101 (each delivery once)", n)
	}
	for _, room := range rooms {
		if got := seqs(t, f.srv, domain.RoomChannel(room)); !slices.Equal(got, oneToN(20)) {
			t.Errorf("%s: seqs %v, want 1..20 each once, in order", room, got)
		}
	}

	// The leader stops: the second dispatcher (woken by nobody, it polls)
	// takes over.
	if err := f.stop(); err != nil {
		t.Fatalf("first dispatcher: %v", err)
	}
	f.projectRooms(rooms, 1, func(room string, _ int) *chattest.Event {
		return chattest.MessageCreated(room, room+"-after", "after the leader stopped")
	})
	f.waitEvents(106)
	f.waitSettled()
	if n := len(f.srv.Events()); n != 106 {
		t.Errorf("Pusher got %d events, want 106", n)
	}
	for _, room := range rooms {
		if got := seqs(t, f.srv, domain.RoomChannel(room)); !slices.Equal(got, oneToN(21)) {
			t.Errorf("%s: seqs %v, want 1..21", room, got)
		}
	}
}

// Delivered rows kept for DELIVERY_RETENTION are purged as fast as they
// come: a full round of the purge is followed by another at the next poll,
// not a minute later (at one round a minute, any rate above ~170 deliveries
// a second grew the table without bound). Rows still in their retention and
// undelivered rows stay.
func TestPurgeKeepsUpWithManyExpiredRows(t *testing.T) {
	f := newIdleFixture(t)
	const expired = 25000 // two and a half purge rounds
	if err := f.db.Exec(`INSERT INTO deliveries (event_id, room_id, seq, channels, name, data, delivered_at)
		SELECT 'old-' || g, 'r-old', g, ARRAY['private-room-r-old'], 'new-message', '{}', now() - interval '2 hours'
		FROM generate_series(1, ?) g`, expired).Error; err != nil {
		t.Fatal(err)
	}
	if err := f.db.Exec(`INSERT INTO deliveries (event_id, room_id, seq, channels, name, data, delivered_at)
		VALUES ('recent', 'r-recent', 1, ARRAY['private-room-r-recent'], 'new-message', '{}', now() - interval '10 minutes')`).Error; err != nil {
		t.Fatal(err)
	}
	cfg := dispatcherConfig
	cfg.Retention = time.Hour
	run(t, publishers.NewDispatcher(f.outbox, f.client, cfg))
	start := time.Now()
	f.eventually("the expired rows to be purged", func() bool {
		var n int64
		f.db.Raw(`SELECT count(*) FROM deliveries WHERE event_id LIKE 'old-%'`).Scan(&n)
		return n == 0
	})
	t.Logf("purged %d expired rows in %v", expired, time.Since(start).Round(time.Millisecond))
	var recent int64
	f.db.Raw(`SELECT count(*) FROM deliveries WHERE event_id = 'recent'`).Scan(&recent)
	if recent != 1 {
		t.Errorf("the row delivered 10 minutes ago (retention 1h) was purged")
	}
}
