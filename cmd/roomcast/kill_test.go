package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roomcast/roomcast/internal/testsupport"

	"github.com/IBM/sarama"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
)

// TestProcess runs the real binary as a subprocess: built once, shared by
// its subtests.
func TestProcess(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	t.Run("Kill9", func(t *testing.T) { t.Parallel(); testKill9(t, bin) })
	t.Run("GracefulStop", func(t *testing.T) { t.Parallel(); testGracefulStop(t, bin) })
	t.Run("GracefulStopMidStream", func(t *testing.T) { t.Parallel(); testGracefulStopMidStream(t, bin) })
}

// buildBinary builds the roomcast binary into a directory of t's.
func buildBinary(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "roomcast")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, goTool(), "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func goTool() string {
	if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}

// proc is one `roomcast run` subprocess.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string
	log  string // path of its combined output
	done chan struct{}
	err  error // Wait's result, once done is closed
}

func (s *stack) startProc(bin, name string) *proc {
	s.t.Helper()
	p := &proc{t: s.t, addr: freeAddr(s.t), log: filepath.Join(s.t.TempDir(), name+".log"), done: make(chan struct{})}
	out, err := os.Create(p.log)
	if err != nil {
		s.t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "run")
	p.cmd.Env = []string{"HTTP_ADDR=" + p.addr}
	for k, v := range s.env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		_ = out.Close()
		s.t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		_ = out.Close()
		close(p.done)
	}()
	s.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if s.t.Failed() {
			s.t.Logf("%s output (tail):\n%s", name, p.tail(30))
		}
	})
	return p
}

func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (p *proc) waitReady() {
	p.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			p.t.Fatalf("roomcast exited before it was ready: %v\n%s", p.err, p.tail(30))
		default:
		}
		code, body, err := httpGet(p.addr, "/readyz")
		if err == nil && code == 200 {
			return
		}
		last = fmt.Sprintf("%d %s %v", code, strings.TrimSpace(body), err)
		time.Sleep(50 * time.Millisecond)
	}
	p.t.Fatalf("/readyz not 200 within 60s; last answer: %s", last)
}

// signal sends sig and waits up to timeout for the process to exit.
func (p *proc) signal(sig syscall.Signal, timeout time.Duration) (time.Duration, error) {
	p.t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
	select {
	case <-p.done:
		return time.Since(start), p.err
	case <-time.After(timeout):
		p.t.Fatalf("roomcast did not exit within %v of %v", timeout, sig)
		return 0, nil
	}
}

// killScript is a conversation over many rooms and what it must leave behind.
type killScript struct {
	events  []*chattest.Event
	rooms   []string
	perRoom int
	// message id -> expected content ("" when deleted) and whether it was edited.
	content map[string]string
	edited  map[string]bool
	deleted map[string]bool
}

// newKillScript: per room 2 joins, 130 messages, 13 edits and 5 deletes (150 events).
func newKillScript(prefix string, rooms int) *killScript {
	ks := &killScript{content: map[string]string{}, edited: map[string]bool{}, deleted: map[string]bool{}}
	perRoom := map[string][]*chattest.Event{}
	for r := range rooms {
		room := fmt.Sprintf("%s-room-%02d", prefix, r)
		ks.rooms = append(ks.rooms, room)
		add := func(e *chattest.Event) { perRoom[room] = append(perRoom[room], e) }
		add(chattest.MemberJoined(room, "u-1"))
		add(chattest.MemberJoined(room, "u-2"))
		for i := 1; i <= 130; i++ {
			id := fmt.Sprintf("%s-m%03d", room, i)
			text := fmt.Sprintf("message %d in %s", i, room)
			add(chattest.MessageCreated(room, id, text))
			ks.content[id] = text
			if i%10 == 0 {
				target := fmt.Sprintf("%s-m%03d", room, i-5)
				add(chattest.MessageEdited(room, target, "edited "+target))
				ks.content[target], ks.edited[target] = "edited "+target, true
			}
			if i%25 == 0 {
				target := fmt.Sprintf("%s-m%03d", room, i-3)
				add(chattest.MessageDeleted(room, target))
				ks.content[target], ks.deleted[target] = "", true
			}
		}
	}
	ks.perRoom = len(perRoom[ks.rooms[0]])
	// Interleave the rooms, as live traffic would.
	for i := range ks.perRoom {
		for _, room := range ks.rooms {
			ks.events = append(ks.events, perRoom[room][i])
		}
	}
	return ks
}

func testKill9(t *testing.T, bin string) {
	s := newStack(t)
	// Only the calls in flight at the kill (and their marks not yet written)
	// may reach Pusher twice: at most two turns of PUSHER_MAX_IN_FLIGHT calls
	// of 10 events.
	const maxInFlight = 8
	s.env["PUSHER_MAX_IN_FLIGHT"] = fmt.Sprint(maxInFlight)
	maxDuplicates := 2 * maxInFlight * 10
	// 40 rooms, 6,000 events: the kill lands at ~30-50% of them however
	// fast batches are (with 3,000 it landed at 960-1,472).
	ks := newKillScript("kill", 40)
	total := len(ks.events)
	s.produceEvents(ks.events...)

	first := s.startProc(bin, "first")
	var atKill int64
	testsupport.WaitFor(t, 60*time.Second, "30% of the events in Postgres", func() (bool, string) {
		n, err := s.count(`SELECT count(*) FROM events`)
		atKill = n
		return err == nil && n >= int64(total)*3/10, fmt.Sprintf("%d of %d (%v)", n, total, err)
	})
	if _, err := first.signal(syscall.SIGKILL, 10*time.Second); err == nil {
		t.Fatalf("the first process exited cleanly on SIGKILL?")
	}
	projectedAtKill := s.mustCount(`SELECT count(*) FROM events`)
	deliveredAtKill := len(s.pusher.Events())
	t.Logf("SIGKILL with %d (then %d) of %d events projected and %d Pusher events delivered",
		atKill, projectedAtKill, total, deliveredAtKill)
	if projectedAtKill >= int64(total) {
		t.Fatalf("everything was projected before the kill: the test did not kill mid-stream")
	}

	restart := time.Now()
	second := s.startProc(bin, "second")
	// The group waits for the killed member's session to time out before it
	// hands its partitions to the new process.
	testsupport.WaitFor(t, 120*time.Second, "the restarted process to project", func() (bool, string) {
		n, err := s.count(`SELECT count(*) FROM events`)
		return err == nil && n > projectedAtKill, fmt.Sprintf("%d projected (%v)", n, err)
	})
	resumed := time.Since(restart)
	s.waitCount(120*time.Second, int64(total), `SELECT count(*) FROM events`)
	projected := time.Since(restart)
	s.waitCount(60*time.Second, 0, `SELECT count(*) FROM deliveries WHERE delivered_at IS NULL`)
	drained := time.Since(restart)
	second.waitReady()

	// Postgres: every id once, every room gap-free, messages as the script says.
	if n := s.mustCount(`SELECT count(DISTINCT id) FROM events`); n != int64(total) {
		t.Errorf("distinct event ids: %d, want %d", n, total)
	}
	want := map[string]int{}
	for _, room := range ks.rooms {
		want[room] = ks.perRoom
	}
	assertGapFree(t, s.roomSeqs(), want)
	if n := s.mustCount(`SELECT count(*) FROM deliveries`); n != int64(total) {
		t.Errorf("deliveries rows: %d, want %d (one per event)", n, total)
	}
	if n := s.mustCount(`SELECT count(*) FROM deliveries WHERE parked_at IS NOT NULL`); n != 0 {
		t.Errorf("%d deliveries parked", n)
	}
	rows, err := s.db.Query(t.Context(), `SELECT id, content, edited_at IS NOT NULL, deleted_at IS NOT NULL FROM messages`)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for rows.Next() {
		var id, content string
		var edited, deleted bool
		if err := rows.Scan(&id, &content, &edited, &deleted); err != nil {
			t.Fatal(err)
		}
		seen++
		wantContent, ok := ks.content[id]
		switch {
		case !ok:
			t.Errorf("unexpected message %s", id)
		case content != wantContent || edited != ks.edited[id] || deleted != ks.deleted[id]:
			t.Errorf("message %s: content %q edited %v deleted %v; want %q %v %v", id, content, edited, deleted,
				wantContent, ks.edited[id], ks.deleted[id])
		}
	}
	rows.Close()
	if seen != len(ks.content) {
		t.Errorf("messages rows: %d, want %d", seen, len(ks.content))
	}

	// Pusher: no seq missing, first occurrences in order, few duplicates.
	duplicates := 0
	for _, room := range ks.rooms {
		var firsts []int64
		got := map[int64]string{}
		for _, e := range s.pusher.EventsOn(domain.RoomChannel(room)) {
			seq := decodePayload(t, e).seq()
			if name, dup := got[seq]; dup {
				duplicates++
				if name != e.Name {
					t.Errorf("room %s seq %d delivered as %s and as %s", room, seq, name, e.Name)
				}
				continue
			}
			got[seq] = e.Name
			firsts = append(firsts, seq)
		}
		if len(firsts) != ks.perRoom {
			t.Errorf("room %s: %d distinct seqs delivered, want %d", room, len(firsts), ks.perRoom)
		}
		for i, seq := range firsts {
			if seq != int64(i+1) {
				t.Errorf("room %s: first deliveries of each seq out of order at %d: %v", room, i, firsts)
				break
			}
		}
	}
	t.Logf("after restart: projecting again after %v, all projected in %v, outbox drained in %v; %d Pusher events for %d deliveries: %d duplicates",
		resumed.Round(time.Millisecond), projected.Round(time.Millisecond), drained.Round(time.Millisecond), len(s.pusher.Events()), total, duplicates)
	// At-least-once: only the calls in flight at the kill (the dispatcher
	// sends one batch of at most 10 at a time) may be re-sent.
	if duplicates > maxDuplicates {
		t.Errorf("%d duplicate Pusher deliveries after one SIGKILL, want at most %d (the calls in flight)", duplicates, maxDuplicates)
	}

	if _, err := second.signal(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Errorf("second process on SIGTERM: %v", err)
	}
}

func testGracefulStop(t *testing.T, bin string) {
	s := newStack(t)
	var events []*chattest.Event
	for i := range 20 {
		for r := range 10 {
			room := fmt.Sprintf("graceful-room-%d", r)
			events = append(events, chattest.MessageCreated(room, fmt.Sprintf("%s-m%d", room, i), "hi"))
		}
	}
	s.produceEvents(events...)
	first := s.startProc(bin, "first")
	first.waitReady()
	s.waitCount(60*time.Second, int64(len(events)), `SELECT count(*) FROM events`)
	s.waitCount(60*time.Second, 0, `SELECT count(*) FROM deliveries WHERE delivered_at IS NULL`)

	took, err := first.signal(syscall.SIGTERM, 30*time.Second)
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("roomcast exited with status %d on SIGTERM:\n%s", exit.ExitCode(), first.tail(20))
		}
		t.Fatalf("roomcast on SIGTERM: %v", err)
	}
	t.Logf("SIGTERM: exited 0 after %v", took.Round(time.Millisecond))
	if !strings.Contains(first.tail(5), "roomcast stopped") {
		t.Errorf("no \"roomcast stopped\" at the end of the log:\n%s", first.tail(5))
	}

	// The same group again: the committed offsets hold, nothing is consumed
	// twice. One marker per partition proves every partition was read up to
	// its end (a partition's events are handled in order).
	restart := time.Now()
	second := s.startProc(bin, "second")
	second.waitReady()
	markers := markersForEveryPartition(t, s.topic, 12)
	s.produceEvents(markers...)
	s.waitCount(60*time.Second, int64(len(events)+len(markers)), `SELECT count(*) FROM events`)
	t.Logf("restarted and consumed %d markers in %v", len(markers), time.Since(restart).Round(time.Millisecond))
	m := scrape(t, second.addr)
	if got := m.sum("roomcast_events_consumed_total"); got != float64(len(markers)) {
		t.Errorf("the restarted process consumed %v events, want only the %d markers", got, len(markers))
	}
	if got := m.sum("roomcast_events_projected_total", `outcome="duplicate"`); got != 0 {
		t.Errorf(`roomcast_events_projected_total{outcome="duplicate"} = %v on the restarted process, want 0`, got)
	}
	if _, err := second.signal(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Errorf("second process on SIGTERM: %v", err)
	}
}

// markersForEveryPartition returns one message per partition of topic, keyed
// so that murmur2 (emit's and the tests' partitioner) spreads them over all.
func markersForEveryPartition(t *testing.T, topic string, partitions int32) []*chattest.Event {
	t.Helper()
	part := sarama.NewMurmur2Partitioner(topic)
	covered := map[int32]bool{}
	var out []*chattest.Event
	for i := 0; len(covered) < int(partitions); i++ {
		if i > 10000 {
			t.Fatal("no keys for every partition")
		}
		room := fmt.Sprintf("marker-room-%d", i)
		p, err := part.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(room)}, partitions)
		if err != nil {
			t.Fatal(err)
		}
		if covered[p] {
			continue
		}
		covered[p] = true
		out = append(out, chattest.MessageCreated(room, room+"-m1", "marker"))
	}
	return out
}

// testGracefulStopMidStream stops the worker with SIGTERM while it is busy:
// it exits 0 in time, and the restarted one re-projects at most the events
// whose acks came too late for the last commit (one per partition).
func testGracefulStopMidStream(t *testing.T, bin string) {
	s := newStack(t)
	// A graceful stop finishes every event already handed out: with the
	// default KAFKA_MAX_IN_FLIGHT (5000) the whole script (3000 events) would
	// be in flight at once and nothing left for the restart.
	s.env["KAFKA_MAX_IN_FLIGHT"] = "300"
	s.env["PROJECTION_BATCH_MAX"] = "100"
	ks := newKillScript("term", 20)
	total := len(ks.events)
	s.produceEvents(ks.events...)
	first := s.startProc(bin, "first")
	testsupport.WaitFor(t, 60*time.Second, "30% of the events in Postgres", func() (bool, string) {
		n, err := s.count(`SELECT count(*) FROM events`)
		return err == nil && n >= int64(total)*3/10, fmt.Sprintf("%d of %d (%v)", n, total, err)
	})
	took, err := first.signal(syscall.SIGTERM, 30*time.Second)
	if err != nil {
		t.Fatalf("roomcast on SIGTERM mid-stream: %v\n%s", err, first.tail(20))
	}
	atStop := s.mustCount(`SELECT count(*) FROM events`)
	t.Logf("SIGTERM mid-stream: exited 0 after %v with %d of %d events projected", took.Round(time.Millisecond), atStop, total)
	if atStop >= int64(total) {
		t.Fatalf("everything was projected before the stop: the test did not stop mid-stream")
	}

	second := s.startProc(bin, "second")
	s.waitCount(60*time.Second, int64(total), `SELECT count(*) FROM events`)
	s.waitCount(60*time.Second, 0, `SELECT count(*) FROM deliveries WHERE delivered_at IS NULL`)
	second.waitReady()
	m := scrape(t, second.addr)
	reprojected := m.sum("roomcast_events_projected_total", `outcome="duplicate"`)
	consumed := m.sum("roomcast_events_consumed_total")
	pusherDups := 0
	for _, room := range ks.rooms {
		got := map[int64]bool{}
		for _, e := range s.pusher.EventsOn(domain.RoomChannel(room)) {
			seq := decodePayload(t, e).seq()
			if got[seq] {
				pusherDups++
			}
			got[seq] = true
		}
		if len(got) != ks.perRoom {
			t.Errorf("room %s: %d distinct seqs delivered, want %d", room, len(got), ks.perRoom)
		}
	}
	t.Logf("restart consumed %v events (%d remained), %v of them already projected; %d duplicate Pusher deliveries",
		consumed, int64(total)-atStop, reprojected, pusherDups)
	if reprojected > 12 {
		t.Errorf("after a graceful stop the restart re-projected %v events, want at most one per partition (12)", reprojected)
	}
	if pusherDups > 10 {
		t.Errorf("%d duplicate Pusher deliveries after a graceful stop, want at most one batch (10)", pusherDups)
	}
	if _, err := second.signal(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Errorf("second process on SIGTERM: %v", err)
	}
}
