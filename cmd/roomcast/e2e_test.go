package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/internal/testsupport"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/fakepusher"
)

// TestEndToEnd sends every event type through `roomcast emit` into a running
// worker and checks the read models and the exact Pusher deliveries.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	w := s.startWorker(map[string]string{"DELIVERY_RETENTION": ""}) // the default: delivered rows deleted

	rooms := []string{"e2e-room-a", "e2e-room-b", "e2e-room-c"}
	type roomScript struct {
		events  []*chattest.Event // room events, each changes something: seq = index+1
		created [3]*chattest.Event
		edit    *chattest.Event
		del     *chattest.Event
	}
	scripts := map[string]*roomScript{}
	var lines [][]byte
	for _, room := range rooms {
		rs := &roomScript{}
		add := func(e *chattest.Event) *chattest.Event {
			rs.events = append(rs.events, e)
			lines = append(lines, e.JSON())
			return e
		}
		add(chattest.MemberJoined(room, "u-1"))
		add(chattest.MemberJoined(room, "u-2"))
		for i := range rs.created {
			rs.created[i] = add(chattest.MessageCreated(room, fmt.Sprintf("%s-m%d", room, i+1), fmt.Sprintf("hello <%d> & \"bye\" from %s", i+1, room)))
		}
		rs.edit = add(chattest.MessageEdited(room, room+"-m1", "hello, edited"))
		rs.del = add(chattest.MessageDeleted(room, room+"-m2"))
		add(chattest.MemberLeft(room, "u-2"))
		scripts[room] = rs
	}
	userNote := chattest.UserNotification([]string{"u-1", "u-2", "u-1"}, "You were mentioned")
	roomsNote := chattest.RoomsNotification(rooms, "Maintenance tonight")
	lines = append(lines, userNote.JSON(), roomsNote.JSON())

	var stdout bytes.Buffer
	if err := run(t.Context(), []string{"emit"}, s.getenv(nil), bytes.NewReader(bytes.Join(lines, []byte("\n"))), &stdout, io.Discard); err != nil {
		t.Fatalf("emit: %v", err)
	}
	if want := fmt.Sprintf("sent %d events to %s", len(lines), s.topic); !strings.Contains(stdout.String(), want) {
		t.Errorf("emit printed %q, want it to contain %q", stdout.String(), want)
	}

	// 3 rooms x 9 (8 room events + the rooms notification) + 2 user channels.
	const wantDeliveries = 3*9 + 2
	s.waitCount(30*time.Second, int64(len(lines)), `SELECT count(*) FROM events`)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := s.pusher.WaitForEvents(ctx, wantDeliveries); err != nil {
		t.Fatal(err)
	}
	// What Pusher accepted leaves the outbox (DELIVERY_RETENTION unset).
	s.waitCount(30*time.Second, 0, `SELECT count(*) FROM deliveries`)

	// Postgres: the event store.
	want := map[string]int{}
	for _, room := range rooms {
		want[room] = 8
	}
	assertGapFree(t, s.roomSeqs(), want)
	if n := s.mustCount(`SELECT count(*) FROM events WHERE type = 'chat.notification.user' AND room_id IS NULL AND seq IS NULL`); n != 1 {
		t.Errorf("user notification events without room and seq: %d, want 1", n)
	}
	if n := s.mustCount(`SELECT count(*) FROM events WHERE type = 'chat.notification.rooms' AND room_id = $1 AND seq IS NULL`, rooms[0]); n != 1 {
		t.Errorf("rooms notification events on the first room without seq: %d, want 1", n)
	}
	for _, room := range rooms {
		rs := scripts[room]
		for i, e := range rs.events {
			var seq int64
			if err := s.db.QueryRow(t.Context(), `SELECT seq FROM events WHERE id = $1`, e.ID).Scan(&seq); err != nil {
				t.Fatalf("event %s: %v", e.ID, err)
			}
			if seq != int64(i+1) {
				t.Errorf("room %s event %d (%s): seq %d, want %d", room, i, e.Type, seq, i+1)
			}
		}
		// The deleted message's text is redacted from the event store.
		var content string
		if err := s.db.QueryRow(t.Context(), `SELECT data->>'content' FROM events WHERE id = $1`, rs.created[1].ID).Scan(&content); err != nil {
			t.Fatal(err)
		}
		if content != "" {
			t.Errorf("room %s: stored create event of the deleted message still holds %q", room, content)
		}
		if n := s.mustCount(`SELECT last_seq FROM rooms WHERE room_id = $1`, room); n != 8 {
			t.Errorf("rooms.last_seq of %s = %d, want 8", room, n)
		}
	}

	// Postgres: messages.
	for _, room := range rooms {
		rs := scripts[room]
		rows, err := s.db.Query(t.Context(), `SELECT id, seq, author_id, author_name, author_avatar, content, created_at, edited_at, deleted_at
			FROM messages WHERE room_id = $1 ORDER BY seq`, room)
		if err != nil {
			t.Fatal(err)
		}
		type msgRow struct {
			id, authorID, authorName, content string
			seq                               int64
			avatar                            *string
			created                           time.Time
			edited, deleted                   *time.Time
		}
		var got []msgRow
		for rows.Next() {
			var r msgRow
			if err := rows.Scan(&r.id, &r.seq, &r.authorID, &r.authorName, &r.avatar, &r.content, &r.created, &r.edited, &r.deleted); err != nil {
				t.Fatal(err)
			}
			got = append(got, r)
		}
		rows.Close()
		if len(got) != 3 {
			t.Fatalf("room %s: %d messages, want 3", room, len(got))
		}
		for i, r := range got {
			c := rs.created[i]
			if r.id != c.Data["messageId"] || r.seq != int64(i+3) || r.authorID != "u-1" || r.authorName != "Ada" || r.avatar != nil {
				t.Errorf("room %s message %d: %+v", room, i, r)
			}
			if ts := domain.FormatTime(r.created); ts != c.Data["createdAt"] {
				t.Errorf("message %s created_at %s, want %s", r.id, ts, c.Data["createdAt"])
			}
		}
		if m := got[0]; m.content != "hello, edited" || m.edited == nil || domain.FormatTime(*m.edited) != rs.edit.Data["editedAt"] || m.deleted != nil {
			t.Errorf("edited message %s: content %q edited_at %v deleted_at %v", m.id, m.content, m.edited, m.deleted)
		}
		if m := got[1]; m.content != "" || m.deleted == nil || domain.FormatTime(*m.deleted) != rs.del.Data["deletedAt"] || m.edited != nil {
			t.Errorf("deleted message %s: content %q edited_at %v deleted_at %v", m.id, m.content, m.edited, m.deleted)
		}
		if m := got[2]; m.content != rs.created[2].Data["content"] || m.edited != nil || m.deleted != nil {
			t.Errorf("untouched message %s: content %q edited_at %v deleted_at %v", m.id, m.content, m.edited, m.deleted)
		}
	}

	// Postgres: members (u-2 left every room).
	rows, err := s.db.Query(t.Context(), `SELECT room_id, user_id, user_name, user_avatar FROM room_members ORDER BY room_id, user_id`)
	if err != nil {
		t.Fatal(err)
	}
	var members []string
	for rows.Next() {
		var room, user, name string
		var avatar *string
		if err := rows.Scan(&room, &user, &name, &avatar); err != nil {
			t.Fatal(err)
		}
		av := "<nil>"
		if avatar != nil {
			av = *avatar
		}
		members = append(members, room+"/"+user+"/"+name+"/"+av)
	}
	rows.Close()
	var wantMembers []string
	for _, room := range rooms {
		wantMembers = append(wantMembers, room+"/u-1/User u-1/https://example.com/u-1.png")
	}
	if !reflect.DeepEqual(members, wantMembers) {
		t.Errorf("room_members:\n got %v\nwant %v", members, wantMembers)
	}

	// Pusher: exactly the deliveries of the contract, each room's in seq order.
	all := s.pusher.Events()
	if len(all) != wantDeliveries {
		t.Errorf("pusher received %d events, want %d", len(all), wantDeliveries)
	}
	for _, room := range rooms {
		rs := scripts[room]
		var roomEvents []fakepusher.Event
		notes := 0
		for _, e := range s.pusher.EventsOn(domain.RoomChannel(room)) {
			if e.Name == domain.PusherNotification {
				notes++
				checkPayload(t, e, notificationWant(roomsNote))
				continue
			}
			roomEvents = append(roomEvents, e)
		}
		if notes != 1 {
			t.Errorf("room %s: %d rooms notifications, want 1", room, notes)
		}
		if len(roomEvents) != len(rs.events) {
			t.Errorf("room %s: %d room deliveries, want %d", room, len(roomEvents), len(rs.events))
			continue
		}
		for i, e := range roomEvents {
			name, wantData := roomDeliveryWant(rs.events[i], int64(i+1))
			if e.Name != name {
				t.Errorf("room %s delivery %d: event %q, want %q", room, i, e.Name, name)
			}
			p := decodePayload(t, e)
			if e.Name == domain.PusherNewMessage && p["id"] == rs.created[1].Data["messageId"] && p["content"] == "" {
				// The delete reached the outbox before the create's delivery
				// went out: its text was redacted from the pending delivery.
				wantData["content"], wantData["redacted"] = "", true
			}
			checkPayload(t, e, wantData)
		}
	}
	for _, user := range []string{"u-1", "u-2"} {
		evs := s.pusher.EventsOn(domain.UserChannel(user))
		if len(evs) != 1 || evs[0].Name != domain.PusherNotification {
			t.Errorf("user %s: deliveries %+v, want one notification", user, evs)
			continue
		}
		checkPayload(t, evs[0], notificationWant(userNote))
	}
	// JSON to Pusher is not HTML-escaped.
	for _, e := range all {
		if strings.Contains(e.Data, `\u003c`) || strings.Contains(e.Data, `\u0026`) {
			t.Errorf("payload is HTML-escaped: %s", e.Data)
		}
	}

	m := scrape(t, w.addr)
	if got := m.sum("roomcast_events_consumed_total"); got != float64(len(lines)) {
		t.Errorf("roomcast_events_consumed_total = %v, want %d", got, len(lines))
	}
	if got := m.sum("roomcast_events_projected_total", `outcome="applied"`); got != float64(len(lines)) {
		t.Errorf("roomcast_events_projected_total{outcome=applied} = %v, want %d", got, len(lines))
	}
	w.stop()
}

// roomDeliveryWant is the Pusher event name and data the contract prescribes for e with seq.
func roomDeliveryWant(e *chattest.Event, seq int64) (string, payload) {
	d := e.Data
	room := d["roomId"]
	switch e.Type {
	case domain.TypeMessageCreated:
		return domain.PusherNewMessage, payload{"id": d["messageId"], "content": d["content"], "authorId": d["authorId"],
			"authorName": d["authorName"], "authorAvatar": d["authorAvatar"], "createdAt": d["createdAt"], "roomId": room, "seq": float64(seq)}
	case domain.TypeMessageEdited:
		return domain.PusherMessageEdited, payload{"id": d["messageId"], "content": d["content"], "editedAt": d["editedAt"], "roomId": room, "seq": float64(seq)}
	case domain.TypeMessageDeleted:
		return domain.PusherMessageDeleted, payload{"id": d["messageId"], "deletedAt": d["deletedAt"], "roomId": room, "seq": float64(seq)}
	case domain.TypeMemberJoined:
		return domain.PusherUserJoined, payload{"userId": d["userId"], "userName": d["userName"], "userAvatar": d["userAvatar"],
			"joinedAt": d["joinedAt"], "roomId": room, "seq": float64(seq)}
	case domain.TypeMemberLeft:
		return domain.PusherUserLeft, payload{"userId": d["userId"], "leftAt": d["leftAt"], "roomId": room, "seq": float64(seq)}
	}
	panic("not a room event: " + string(e.Type))
}

func notificationWant(e *chattest.Event) payload {
	n := e.Data["notification"].(map[string]any)
	return payload{"id": n["id"], "type": n["type"], "title": n["title"], "body": n["body"]}
}

func checkPayload(t *testing.T, e fakepusher.Event, want payload) {
	t.Helper()
	got := decodePayload(t, e)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s on %s:\n got %v\nwant %v", e.Name, e.Channel, got, want)
	}
}

// TestDuplicateEventID produces one event three times: one row, one delivery.
func TestDuplicateEventID(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	w := s.startWorker(nil)
	room := "dup-room"
	e := chattest.MessageCreated(room, "dup-m1", "only once")
	s.produceEvents(e, e, e)
	// A later event of the same room (same partition) tells that all three were handled.
	marker := chattest.MessageCreated(room, "dup-m2", "marker")
	s.produceEvents(marker)

	s.waitCount(30*time.Second, 2, `SELECT count(*) FROM events`)
	s.waitCount(30*time.Second, 0, `SELECT count(*) FROM deliveries WHERE delivered_at IS NULL`)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := s.pusher.WaitForEvents(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if n := s.mustCount(`SELECT count(*) FROM events WHERE id = $1`, e.ID); n != 1 {
		t.Errorf("events rows for the duplicated id: %d, want 1", n)
	}
	if n := s.mustCount(`SELECT count(*) FROM deliveries WHERE event_id = $1`, e.ID); n != 1 {
		t.Errorf("deliveries for the duplicated id: %d, want 1", n)
	}
	var seqs []int64
	for _, ev := range s.pusher.EventsOn(domain.RoomChannel(room)) {
		p := decodePayload(t, ev)
		if p["id"] == "dup-m1" {
			seqs = append(seqs, p.seq())
		}
	}
	if len(seqs) != 1 || seqs[0] != 1 {
		t.Errorf("pusher deliveries of the duplicated event: seqs %v, want [1]", seqs)
	}
	assertGapFree(t, s.roomSeqs(), map[string]int{room: 2})
	m := scrape(t, w.addr)
	if got := m.sum("roomcast_events_projected_total", `outcome="duplicate"`); got != 2 {
		t.Errorf(`roomcast_events_projected_total{outcome="duplicate"} = %v, want 2`, got)
	}
	if got := len(s.pusher.Events()); got != 2 {
		t.Errorf("pusher events: %d, want 2", got)
	}
	w.stop()
}

// TestPusherOutage: while Pusher answers 503, projection goes on; once it is
// back every delivery goes out, each room's in order.
func TestPusherOutage(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	// Down, and slow to say so: the dispatcher's concurrent calls overlap and
	// fail together, as they do when a real Pusher goes away under load.
	s.pusher.SetDown(true)
	s.pusher.SetLatency(50 * time.Millisecond)
	outageStart := time.Now()
	w := s.startWorker(map[string]string{"DELIVERY_RETENTION": ""}) // the default: delivered rows deleted

	const rooms, perRoom = 50, 10
	var events []*chattest.Event
	for i := range perRoom {
		for r := range rooms {
			room := fmt.Sprintf("outage-room-%d", r)
			events = append(events, chattest.MessageCreated(room, fmt.Sprintf("%s-m%d", room, i), fmt.Sprintf("message %d", i)))
		}
	}
	start := time.Now()
	s.produceEvents(events...)
	s.waitCount(60*time.Second, rooms*perRoom, `SELECT count(*) FROM events`)
	projected := time.Since(start)
	if got := len(s.pusher.Events()); got != 0 {
		t.Fatalf("pusher is down but recorded %d events", got)
	}
	if n := s.mustCount(`SELECT count(*) FROM deliveries WHERE delivered_at IS NULL`); n != rooms*perRoom {
		t.Errorf("pending deliveries while Pusher is down: %d, want %d", n, rooms*perRoom)
	}
	// The dispatcher did try (and got 503s): projection may finish before
	// the first refused call (50 ms slow) is answered.
	failed := 0
	for deadline := time.Now().Add(10 * time.Second); failed == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, c := range s.pusher.Calls() {
			if c.Status == 503 {
				failed++
			}
		}
	}
	if failed == 0 {
		t.Errorf("no call reached Pusher while it was down")
	}
	m := scrape(t, w.addr)
	for deadline := time.Now().Add(2 * time.Second); m.sum("roomcast_pusher_calls_total", `status="503"`) == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // the answer reaches the fake's record before roomcast counts it
		m = scrape(t, w.addr)
	}
	if got := m.sum("roomcast_deliveries_pending"); got != rooms*perRoom {
		t.Errorf("roomcast_deliveries_pending = %v, want %d", got, rooms*perRoom)
	}
	if got := m.sum("roomcast_pusher_calls_total", `status="503"`); got == 0 {
		t.Errorf(`roomcast_pusher_calls_total{status="503"} = 0, want > 0 (series: %v)`, filterSeries(m, "roomcast_pusher_calls_total"))
	}

	// An outage long enough for several failed rounds, so that the backoff
	// has grown when Pusher comes back.
	time.Sleep(time.Until(outageStart.Add(3 * time.Second)))
	s.pusher.SetLatency(0)
	s.pusher.SetDown(false)
	up := time.Now()
	outage := up.Sub(outageStart)
	// Exponential backoff doubles the pause after each failed attempt, so the
	// pause running when Pusher comes back is at most about the outage so far
	// (plus the first pause and jitter): the next attempt, which Pusher
	// accepts, comes within ~2x the outage. That bounds the backoff alone;
	// draining the backlog after it depends on the machine and is only waited
	// for.
	limit := 2*outage + 3*time.Second
	testsupport.WaitFor(t, limit, fmt.Sprintf("a call accepted within %v of Pusher's return after a %v outage (else the backoff grew faster than the outage)",
		limit.Round(time.Millisecond), outage.Round(time.Millisecond)), func() (bool, string) {
		n := acceptedCalls(s)
		return n > 0, fmt.Sprintf("%d calls accepted", n)
	})
	resumed := time.Since(up)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := s.pusher.WaitForEvents(ctx, rooms*perRoom); err != nil {
		t.Fatal(err)
	}
	drained := time.Since(up)
	s.waitCount(30*time.Second, 0, `SELECT count(*) FROM deliveries`) // delivered, so deleted
	t.Logf("500 events projected in %v with Pusher down (%d failed calls); outage %v; the first call accepted %v and all delivered %v after Pusher came back",
		projected.Round(time.Millisecond), failed, outage.Round(time.Millisecond), resumed.Round(time.Millisecond), drained.Round(time.Millisecond))

	if got := len(s.pusher.Events()); got != rooms*perRoom {
		t.Errorf("pusher events: %d, want %d (no duplicates after 503s)", got, rooms*perRoom)
	}
	for r := range rooms {
		room := fmt.Sprintf("outage-room-%d", r)
		var seqs []int64
		for _, e := range s.pusher.EventsOn(domain.RoomChannel(room)) {
			seqs = append(seqs, decodePayload(t, e).seq())
		}
		if len(seqs) != perRoom {
			t.Errorf("room %s: %d deliveries, want %d", room, len(seqs), perRoom)
		}
		for i, seq := range seqs {
			if seq != int64(i+1) {
				t.Errorf("room %s: seqs in arrival order %v, want 1..%d", room, seqs, perRoom)
				break
			}
		}
	}
	w.stop()
}

func filterSeries(m metrics, name string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if strings.HasPrefix(k, name) {
			out[k] = v
		}
	}
	return out
}

// TestHealthEndpoints checks /healthz, /readyz and the metrics operators rely on.
func TestHealthEndpoints(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	w := s.startWorker(nil)
	w.waitReady()
	code, body, err := httpGet(w.addr, "/healthz")
	if err != nil || code != 200 {
		t.Errorf("GET /healthz: %d %q %v", code, body, err)
	}
	code, body, err = httpGet(w.addr, "/readyz")
	if err != nil || code != 200 {
		t.Errorf("GET /readyz: %d %q %v", code, body, err)
	}
	before := scrape(t, w.addr)
	if !before.has("roomcast_deliveries_pending") {
		t.Errorf("/metrics lacks roomcast_deliveries_pending")
	}
	// Series exist from the start, so dashboards show 0 rather than "no data".
	for _, name := range []string{"roomcast_events_consumed_total", "roomcast_pusher_calls_total"} {
		if !before.has(name) {
			t.Errorf("before the first event /metrics lacks %s", name)
		}
	}

	s.produceEvents(chattest.MessageCreated("health-room", "health-m1", "hi"))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := s.pusher.WaitForEvents(ctx, 1); err != nil {
		t.Fatal(err)
	}
	s.waitCount(30*time.Second, 0, `SELECT count(*) FROM deliveries WHERE delivered_at IS NULL`)
	testsupport.WaitFor(t, 10*time.Second, "metrics after one event", func() (bool, string) {
		m := scrape(t, w.addr)
		consumed := m.sum("roomcast_events_consumed_total", `type="chat.message.created"`)
		calls := m.sum("roomcast_pusher_calls_total")
		pending, hasPending := m["roomcast_deliveries_pending"]
		return consumed == 1 && calls >= 1 && hasPending && pending == 0 && m.has("roomcast_kafka_consumer_lag") && m.has("roomcast_projection_batch_events_count"),
			fmt.Sprintf("consumed %v, pusher calls %v, pending %v (present %v), lag present %v", consumed, calls, pending, hasPending, m.has("roomcast_kafka_consumer_lag"))
	})
	w.stop()
}

// TestFanOutLimits: the sender's socket is excluded, a notification to 250
// users (with duplicates) goes out once per user in triggers of at most 100
// channels, and a message too large for Pusher's 10 KB is sent truncated
// while Postgres keeps it whole.
func TestFanOutLimits(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	w := s.startWorker(nil)
	const room = "fanout-room"

	withSocket := chattest.MessageCreated(room, "fanout-m1", "from my socket").With("socketId", "123.456")
	big := strings.Repeat("€", 4000) // 4000 characters, 12000 bytes of UTF-8
	bigMsg := chattest.MessageCreated(room, "fanout-m2", big)
	users := chattest.IDs("fanout-user", 250)
	note := chattest.UserNotification(append(users, users[:10]...), "to many")
	s.produceEvents(withSocket, bigMsg, note)

	wantEvents := 2 + len(users)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := s.pusher.WaitForEvents(ctx, wantEvents); err != nil {
		t.Fatal(err)
	}
	s.waitCount(30*time.Second, 0, `SELECT count(*) FROM deliveries WHERE delivered_at IS NULL`)

	roomEvents := s.pusher.EventsOn(domain.RoomChannel(room))
	if len(roomEvents) != 2 {
		t.Fatalf("room deliveries: %d, want 2", len(roomEvents))
	}
	if roomEvents[0].SocketID != "123.456" {
		t.Errorf("socket_id sent to Pusher: %q, want 123.456", roomEvents[0].SocketID)
	}
	if roomEvents[1].SocketID != "" {
		t.Errorf("socket_id %q on an event that has none", roomEvents[1].SocketID)
	}
	p := decodePayload(t, roomEvents[1])
	content, _ := p["content"].(string)
	if len(roomEvents[1].Data) > 10240 || p["truncated"] != true || content == "" || !strings.HasPrefix(big, content) || content == big {
		t.Errorf("large message: %d bytes sent, truncated %v, content %d bytes (a prefix of the original: %v)",
			len(roomEvents[1].Data), p["truncated"], len(content), strings.HasPrefix(big, content))
	}
	var stored string
	if err := s.db.QueryRow(t.Context(), `SELECT content FROM messages WHERE id = 'fanout-m2'`).Scan(&stored); err != nil || stored != big {
		t.Errorf("Postgres keeps %d bytes of the large message (%v), want all %d", len(stored), err, len(big))
	}

	perUser := map[string]int{}
	for _, e := range s.pusher.Events() {
		if strings.HasPrefix(e.Channel, domain.UserChannelPrefix) {
			perUser[strings.TrimPrefix(e.Channel, domain.UserChannelPrefix)]++
			checkPayload(t, e, notificationWant(note))
		}
	}
	if len(perUser) != len(users) {
		t.Errorf("users notified: %d, want %d", len(perUser), len(users))
	}
	for u, n := range perUser {
		if n != 1 {
			t.Errorf("user %s notified %d times, want once", u, n)
		}
	}
	noteCalls := 0
	for _, c := range s.pusher.Calls() {
		if c.Channels > 100 {
			t.Errorf("call %d carried %d channels, Pusher allows 100", c.Seq, c.Channels)
		}
		if c.Status == 200 && strings.HasSuffix(c.Path, "/events") {
			noteCalls++
		}
	}
	if noteCalls != 3 {
		t.Errorf("triggers for a notification to 250 users: %d, want 3 (100+100+50 channels)", noteCalls)
	}
	w.stop()
}

// TestSampleThroughEmit pipes `roomcast sample` into `roomcast emit`: the
// sample is a valid conversation the worker projects without dead letters.
func TestSampleThroughEmit(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	w := s.startWorker(nil)
	var sample bytes.Buffer
	if err := run(t.Context(), []string{"sample", "-rooms", "3", "-messages", "4"}, s.getenv(nil), nil, &sample, io.Discard); err != nil {
		t.Fatalf("sample: %v", err)
	}
	lines := strings.Count(strings.TrimSpace(sample.String()), "\n") + 1
	var out bytes.Buffer
	if err := run(t.Context(), []string{"emit"}, s.getenv(nil), &sample, &out, io.Discard); err != nil {
		t.Fatalf("emit: %v", err)
	}
	if want := fmt.Sprintf("sent %d events", lines); !strings.Contains(out.String(), want) {
		t.Errorf("emit printed %q, want %q", out.String(), want)
	}
	s.waitCount(30*time.Second, int64(lines), `SELECT count(*) FROM events`)
	s.waitCount(30*time.Second, 0, `SELECT count(*) FROM deliveries WHERE delivered_at IS NULL`)
	if n := s.mustCount(`SELECT count(*) FROM messages`); n != 12 {
		t.Errorf("messages: %d, want 12", n)
	}
	if n := topicSize(t, s.brokers, s.dlq); n != 0 {
		t.Errorf("the sample put %d events in the DLQ", n)
	}
	if n := s.mustCount(`SELECT count(*) FROM events WHERE seq IS NULL AND type NOT LIKE 'chat.notification.%'`); n != 0 {
		t.Errorf("%d room events of the sample changed nothing", n)
	}
	w.stop()
}

// TestPusherFlapping: while events stream over many rooms, Pusher fails some
// calls now and then (503, 429, a short outage). Without a crash nothing may
// be sent twice, nothing skipped, and each room's events arrive in seq order.
func TestPusherFlapping(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.pusher.SetLatency(5 * time.Millisecond) // calls overlap
	w := s.startWorker(map[string]string{"LOG_LEVEL": "error"})

	const rooms, perRoom, batches = 20, 40, 20 // 800 events in 20 batches
	produced := make(chan error, 1)
	go func() {
		n := 0
		for b := range batches {
			var msgs []kmsg
			for range rooms * perRoom / batches {
				room := fmt.Sprintf("flap-room-%02d", n%rooms)
				msgs = append(msgs, eventMsg(chattest.MessageCreated(room, fmt.Sprintf("flap-m-%d", n), fmt.Sprintf("message %d", n))))
				n++
			}
			if err := s.tryProduce(msgs...); err != nil {
				produced <- err
				return
			}
			switch b % 5 {
			case 1:
				s.pusher.FailNext(3, 503)
			case 2:
				s.pusher.FailNext(2, 429)
			case 3:
				s.pusher.SetDown(true)
			case 4:
				s.pusher.SetDown(false)
			}
			time.Sleep(50 * time.Millisecond) // pace the stream
		}
		s.pusher.SetDown(false)
		produced <- nil
	}()
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	total := rooms * perRoom
	s.waitCount(60*time.Second, int64(total), `SELECT count(*) FROM events`)
	start := time.Now()
	s.waitCount(120*time.Second, 0, `SELECT count(*) FROM deliveries WHERE delivered_at IS NULL`)
	failed := 0
	for _, c := range s.pusher.Calls() {
		if c.Status != 200 {
			failed++
		}
	}
	t.Logf("%d calls failed on the way; outbox drained %v after the last event was projected", failed, time.Since(start).Round(time.Millisecond))
	if failed == 0 {
		t.Errorf("no call failed: the test injected nothing")
	}
	if got := len(s.pusher.Events()); got != total {
		t.Errorf("pusher events: %d, want %d (exactly once without a crash)", got, total)
	}
	for r := range rooms {
		room := fmt.Sprintf("flap-room-%02d", r)
		var seqs []int64
		for _, e := range s.pusher.EventsOn(domain.RoomChannel(room)) {
			seqs = append(seqs, decodePayload(t, e).seq())
		}
		ok := len(seqs) == perRoom
		for i, seq := range seqs {
			ok = ok && seq == int64(i+1)
		}
		if !ok {
			t.Errorf("room %s: seqs in arrival order %v, want 1..%d once each", room, seqs, perRoom)
		}
	}
	w.stop()
}
