package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/testsupport"
)

// TestBadInputIsDeadLettered interleaves valid events with every kind of bad
// input in one partition: each bad one lands in the DLQ unchanged with its
// reason, and the valid ones around it are projected.
func TestBadInputIsDeadLettered(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	w := s.startWorker(nil)
	const room = "bad-room"

	unknownType := chattest.MessageCreated(room, "bad-m-type", "x")
	unknownType.Type = "chat.message.pinned"
	specV03 := chattest.MessageCreated(room, "bad-m-spec", "x")
	specV03.Extra = map[string]any{"specversion": "0.3"}

	type bad struct {
		name   string
		msg    kmsg
		reason []string // substrings of reason_poisoned
	}
	bads := []bad{
		{"not JSON", kmsg{room, []byte(`{"specversion":"1.0","id":`)}, []string{"not JSON"}},
		{"unknown type", kmsg{room, unknownType.JSON()}, []string{"unknown event type", "chat.message.pinned"}},
		{"missing field", kmsg{room, chattest.MessageCreated(room, "bad-m-missing", "x").With("authorId", nil).JSON()}, []string{"data.authorId", "missing"}},
		{"bad id", kmsg{room, chattest.MessageCreated(room, "bad id!", "x").JSON()}, []string{"data.messageId", "not a valid id"}},
		{"content too long", kmsg{room, chattest.MessageCreated(room, "bad-m-long", strings.Repeat("é", 4001)).JSON()}, []string{"data.content", "4001 characters, at most 4000"}},
		{"specversion 0.3", kmsg{room, specV03.JSON()}, []string{"specversion", `"0.3"`}},
		{"edit of an unknown message", kmsg{room, chattest.MessageEdited(room, "bad-m-nope", "x").JSON()}, []string{"unknown message", "bad-m-nope"}},
	}
	valid := []*chattest.Event{
		chattest.MemberJoined(room, "u-1"),
		chattest.MessageCreated(room, "bad-m1", "first"),
		chattest.MessageCreated(room, "bad-m2", "second"),
		chattest.MessageEdited(room, "bad-m1", "first, edited"),
		chattest.MessageCreated(room, "bad-m3", "third"),
		chattest.MessageDeleted(room, "bad-m2"),
		chattest.MessageCreated(room, "bad-m4", "fourth"),
		chattest.MemberJoined(room, "u-2"),
	}
	var msgs []kmsg
	for i, v := range valid {
		msgs = append(msgs, eventMsg(v))
		if i < len(bads) {
			msgs = append(msgs, bads[i].msg)
		}
	}
	// A bad input in another partition too, with a key of its own.
	other := kmsg{"other-room", []byte("definitely not json")}
	msgs = append(msgs, other)
	s.produce(msgs...)

	dead := readTopic(t, s.brokers, s.dlq, len(bads)+1, 60*time.Second)
	var inRoom [][]byte
	for _, d := range dead {
		reason := ""
		for _, h := range d.Headers {
			if string(h.Key) == "reason_poisoned" {
				reason = string(h.Value)
			}
		}
		if string(d.Key) == other.key {
			if !bytes.Equal(d.Value, other.value) || !strings.Contains(reason, "not JSON") {
				t.Errorf("dead letter of the other room: value %q reason %q", d.Value, reason)
			}
			continue
		}
		inRoom = append(inRoom, d.Value)
		i := len(inRoom) - 1
		if i >= len(bads) {
			t.Errorf("unexpected dead letter %q (key %q, reason %q)", d.Value, d.Key, reason)
			continue
		}
		b := bads[i]
		if string(d.Key) != b.msg.key {
			t.Errorf("%s: dead letter key %q, want %q", b.name, d.Key, b.msg.key)
		}
		if !bytes.Equal(d.Value, b.msg.value) {
			t.Errorf("%s: dead letter value changed:\n got %.200q\nwant %.200q", b.name, d.Value, b.msg.value)
		}
		for _, want := range b.reason {
			if !strings.Contains(reason, want) {
				t.Errorf("%s: reason_poisoned %q does not contain %q", b.name, reason, want)
			}
		}
		if strings.Contains(reason, "\n") || len(reason) > 1000 {
			t.Errorf("%s: reason_poisoned is not one short line: %q", b.name, reason)
		}
		t.Logf("%-26s -> reason_poisoned %q", b.name, reason)
	}
	if len(inRoom) != len(bads) {
		t.Errorf("dead letters of %s: %d, want %d", room, len(inRoom), len(bads))
	}

	// The stream went on: every valid event is projected, in order.
	s.waitCount(30*time.Second, int64(len(valid)), `SELECT count(*) FROM events`)
	assertGapFree(t, s.roomSeqs(), map[string]int{room: len(valid)})
	for i, v := range valid {
		var seq int64
		if err := s.db.QueryRow(t.Context(), `SELECT seq FROM events WHERE id = $1`, v.ID).Scan(&seq); err != nil {
			t.Fatalf("valid event %d (%s) not stored: %v", i, v.Type, err)
		}
		if seq != int64(i+1) {
			t.Errorf("valid event %d: seq %d, want %d", i, seq, i+1)
		}
	}
	if n := s.mustCount(`SELECT count(*) FROM messages WHERE id LIKE 'bad-m%' AND id NOT IN ('bad-m1','bad-m2','bad-m3','bad-m4')`); n != 0 {
		t.Errorf("%d messages from bad input were stored", n)
	}
	var content string
	if err := s.db.QueryRow(t.Context(), `SELECT content FROM messages WHERE id = 'bad-m1'`).Scan(&content); err != nil || content != "first, edited" {
		t.Errorf("bad-m1 content %q (%v), want the edit", content, err)
	}
	s.waitCount(30*time.Second, 0, `SELECT count(*) FROM deliveries WHERE delivered_at IS NULL`)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := s.pusher.WaitForEvents(ctx, len(valid)); err != nil {
		t.Fatal(err)
	}
	evs := s.pusher.EventsOn(domain.RoomChannel(room))
	for i, e := range evs {
		if seq := decodePayload(t, e).seq(); seq != int64(i+1) {
			t.Errorf("pusher delivery %d on %s has seq %d", i, room, seq)
		}
	}
	if len(evs) != len(valid) {
		t.Errorf("pusher deliveries on %s: %d, want %d", room, len(evs), len(valid))
	}

	testsupport.WaitFor(t, 10*time.Second, "dead-letter metrics", func() (bool, string) {
		m := scrape(t, w.addr)
		total := m.sum("roomcast_events_dead_lettered_total")
		unknown := m.sum("roomcast_events_dead_lettered_total", `reason="unknown_message"`)
		invalid := m.sum("roomcast_events_dead_lettered_total", `reason="invalid"`)
		return total == float64(len(bads)+1) && unknown == 1 && invalid == float64(len(bads)),
			fmt.Sprintf("total %v (want %d), unknown_message %v (want 1), invalid %v (want %d): %v",
				total, len(bads)+1, unknown, invalid, len(bads), filterSeries(m, "roomcast_events_dead_lettered_total"))
	})
	w.stop()
}

// TestPostgresRestartMidStream restarts the Postgres server while events
// stream in: no valid event may be dead-lettered, and all are projected after.
// It restarts the cluster every test shares, so it must not run in parallel.
func TestPostgresRestartMidStream(t *testing.T) {
	pg := testsupport.PostgresServer(t)
	s := newStack(t)
	// The shared cluster runs with synchronous_commit=off (speed), so a crash
	// loses the last few commits that Postgres already acknowledged: no
	// consumer can survive that. This database commits synchronously; the
	// worker connects after this.
	dbName := s.dbURL[strings.LastIndexByte(s.dbURL, '/')+1:]
	dbName, _, _ = strings.Cut(dbName, "?")
	if _, err := s.db.Exec(t.Context(), `ALTER DATABASE "`+dbName+`" SET synchronous_commit = on`); err != nil {
		t.Fatal(err)
	}
	w := s.startWorker(map[string]string{"LOG_LEVEL": "warn"})
	w.waitReady()

	const rooms, batches, perBatch = 10, 60, 25 // 1500 events
	total := batches * perBatch
	var produced atomic.Int64
	produceErr := make(chan error, 1)
	go func() {
		n := 0
		for range batches {
			var batch []*chattest.Event
			for range perBatch {
				room := fmt.Sprintf("pgr-room-%d", n%rooms)
				batch = append(batch, chattest.MessageCreated(room, fmt.Sprintf("pgr-m-%d", n), fmt.Sprintf("message %d", n)))
				n++
			}
			msgs := make([]kmsg, len(batch))
			for i, e := range batch {
				msgs[i] = eventMsg(e)
			}
			if err := s.tryProduce(msgs...); err != nil {
				produceErr <- err
				return
			}
			produced.Add(int64(len(batch)))
			time.Sleep(40 * time.Millisecond) // pace the stream so that it spans the restart
		}
		produceErr <- nil
	}()

	// Restart once a good part is projected and the stream still flows.
	testsupport.WaitFor(t, 60*time.Second, "first events projected", func() (bool, string) {
		n, err := s.count(`SELECT count(*) FROM events`)
		return err == nil && n >= 150, fmt.Sprintf("%d projected (%v)", n, err)
	})
	before := produced.Load()
	restartStart := time.Now()
	if err := pg.Restart(t.Context()); err != nil {
		t.Fatalf("restart postgres: %v", err)
	}
	t.Logf("postgres restarted (fast shutdown) in %v; %d of %d events produced before, %d after",
		time.Since(restartStart).Round(time.Millisecond), before, total, produced.Load())
	if before >= int64(total) {
		t.Errorf("the stream had ended before the restart: the test did not exercise a restart mid-stream")
	}

	// Then a crash (immediate shutdown), down while 100 more events arrive.
	testsupport.WaitFor(t, 60*time.Second, "more events projected", func() (bool, string) {
		n, err := s.count(`SELECT count(*) FROM events`)
		return err == nil && n >= 600, fmt.Sprintf("%d projected (%v)", n, err)
	})
	before = produced.Load()
	downStart := time.Now()
	if err := pg.Kill(); err != nil {
		t.Fatalf("kill postgres: %v", err)
	}
	testsupport.WaitFor(t, 30*time.Second, "events produced while postgres is down", func() (bool, string) {
		n := produced.Load()
		return n >= min(before+100, int64(total)), fmt.Sprintf("%d produced", n)
	})
	if err := pg.Restart(t.Context()); err != nil {
		t.Fatalf("restart postgres after kill: %v", err)
	}
	t.Logf("postgres down (killed) for %v while events %d..%d were produced",
		time.Since(downStart).Round(time.Millisecond), before, produced.Load())
	if before >= int64(total) {
		t.Errorf("the stream had ended before the crash: the test did not exercise a crash mid-stream")
	}
	if err := <-produceErr; err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		t.Logf("worker log tail:\n%s", w.logs.Tail(60))
		var missing []string
		for i := range total {
			var ok bool
			_ = s.db.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM messages WHERE id = $1)`, fmt.Sprintf("pgr-m-%d", i)).Scan(&ok)
			if !ok {
				missing = append(missing, fmt.Sprintf("pgr-m-%d", i))
			}
		}
		t.Logf("messages not projected: %v", missing)
	})
	testsupport.WaitFor(t, 60*time.Second, "every event projected", func() (bool, string) {
		if dead := topicSize(t, s.brokers, s.dlq); dead > 0 {
			t.Fatalf("%v valid events went to the DLQ during the Postgres restarts", dead)
		}
		n, err := s.count(`SELECT count(*) FROM events`)
		return err == nil && n == int64(total), fmt.Sprintf("%d of %d (%v)", n, total, err)
	})
	t.Logf("all %d projected %v after the stream ended", total, time.Since(start).Round(time.Millisecond))

	if n := topicSize(t, s.brokers, s.dlq); n != 0 {
		dead := readTopic(t, s.brokers, s.dlq, int(n), 10*time.Second)
		for _, d := range dead[:min(len(dead), 5)] {
			for _, h := range d.Headers {
				if string(h.Key) == "reason_poisoned" {
					t.Logf("dead letter %s: %s", d.Key, h.Value)
				}
			}
		}
		t.Errorf("%d valid events went to the DLQ during the Postgres restart", n)
	}
	want := map[string]int{}
	for r := range rooms {
		want[fmt.Sprintf("pgr-room-%d", r)] = total / rooms
	}
	assertGapFree(t, s.roomSeqs(), want)
	if n := s.mustCount(`SELECT count(*) FROM messages`); n != int64(total) {
		t.Errorf("messages: %d, want %d", n, total)
	}
	// Deliveries recover too.
	s.waitCount(60*time.Second, 0, `SELECT count(*) FROM deliveries WHERE delivered_at IS NULL`)
	seen := map[string]map[int64]bool{}
	for _, e := range s.pusher.Events() {
		if seen[e.Channel] == nil {
			seen[e.Channel] = map[int64]bool{}
		}
		seen[e.Channel][decodePayload(t, e).seq()] = true
	}
	for room, n := range want {
		if got := len(seen[domain.RoomChannel(room)]); got != n {
			t.Errorf("room %s: %d distinct seqs delivered to Pusher, want %d", room, got, n)
		}
	}
	m := scrape(t, w.addr)
	if got := m.sum("roomcast_events_dead_lettered_total"); got != 0 {
		t.Errorf("roomcast_events_dead_lettered_total = %v, want 0", got)
	}
	t.Logf("projection failures retried: %v", m.sum("roomcast_projection_failures_total"))
	w.stop()
}

// TestStopWhilePusherHangs: a stop while a Pusher call hangs returns nil
// within the call timeout, and what Pusher never accepted stays owed and is
// delivered by the next worker.
func TestStopWhilePusherHangs(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.pusher.SetLatency(time.Minute)
	w := s.startWorker(map[string]string{"PUSHER_TIMEOUT": "2s", "SHUTDOWN_TIMEOUT": "20s"})
	const room = "hang-room"
	s.produceEvents(chattest.MessageCreated(room, "hang-m1", "one"), chattest.MessageCreated(room, "hang-m2", "two"))
	s.waitCount(30*time.Second, 2, `SELECT count(*) FROM events`)
	start := time.Now()
	w.stop()
	took := time.Since(start)
	t.Logf("stopped in %v with a Pusher call hanging", took.Round(time.Millisecond))
	if took > 15*time.Second {
		t.Errorf("stop took %v", took)
	}
	if n := s.mustCount(`SELECT count(*) FROM deliveries WHERE delivered_at IS NULL`); n != 2 {
		t.Errorf("deliveries still owed after the stop: %d, want 2 (Pusher accepted none)", n)
	}
	if got := len(s.pusher.Events()); got != 0 {
		t.Fatalf("pusher recorded %d events despite the latency", got)
	}

	s.pusher.SetLatency(0)
	s.startWorker(nil)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := s.pusher.WaitForEvents(ctx, 2); err != nil {
		t.Fatal(err)
	}
	s.waitCount(30*time.Second, 0, `SELECT count(*) FROM deliveries WHERE delivered_at IS NULL`)
	var seqs []int64
	for _, e := range s.pusher.EventsOn(domain.RoomChannel(room)) {
		seqs = append(seqs, decodePayload(t, e).seq())
	}
	if len(seqs) != 2 || seqs[0] != 1 || seqs[1] != 2 {
		t.Errorf("seqs delivered after the restart: %v, want [1 2]", seqs)
	}
}
