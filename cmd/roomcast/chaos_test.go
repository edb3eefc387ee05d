package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roomcast/roomcast/internal/testsupport"
)

// chaosConfig sizes a chaos run: `make test` runs shortChaos, `make chaos`
// (ROOMCAST_CHAOS=long) longChaos.
type chaosConfig struct {
	rate, rooms int
	backlog     time.Duration   // of the stream, produced before the first worker starts
	outageHold  time.Duration   // how long Pusher stays down once the stall shows
	pgDownHold  time.Duration   // how long Postgres stays down once the stall shows
	kills       int             // SIGKILLs, each followed by a restart
	gaps        []time.Duration // between a (re)start and the next kill, cycled
	tail        time.Duration   // of the stream after the last restart
	settle      time.Duration   // to project and deliver everything after the stream ends
}

var (
	shortChaos = chaosConfig{rate: 2000, rooms: 100, backlog: 2 * time.Second, kills: 3,
		gaps: []time.Duration{2 * time.Second, 3 * time.Second, 4 * time.Second}, tail: 3 * time.Second, settle: time.Minute}
	longChaos = chaosConfig{rate: 4000, rooms: 300, backlog: 10 * time.Second, outageHold: 15 * time.Second, pgDownHold: 10 * time.Second,
		kills: 10, gaps: []time.Duration{2 * time.Second, 3 * time.Second, 4 * time.Second, 2500 * time.Millisecond, 3500 * time.Millisecond},
		tail: 10 * time.Second, settle: 3 * time.Minute}
)

// TestChaos runs the real binary against a live stream with hostile
// messages at the heads of four partitions (ahead of a backlog), a Pusher
// outage, Postgres down, and a SIGKILL loop (a restart after each kill).
// Every valid event must be projected once and delivered in order with
// gap-free seqs, each hostile message dead-lettered with its reason and
// never stored, and the stall metrics raised while Pusher or Postgres is
// down (STALL_AFTER=1s) and cleared after. It waits on conditions only.
//
// It takes Postgres down, so it must not run in parallel with the
// package's other tests.
func TestChaos(t *testing.T) {
	cfg := shortChaos
	if os.Getenv("ROOMCAST_CHAOS") == "long" {
		cfg = longChaos
	}
	pg := testsupport.PostgresServer(t)
	bin := buildBinary(t)
	s, dupBound := crashLoopStack(t, "chaos")
	s.env["STALL_AFTER"] = "1s"
	// Few messages in flight, so that a partition blocked at its head
	// starves within a short run (the issue saw it with 72,000 events
	// behind one at the default of 5,000 per partition and in all).
	s.env["KAFKA_MAX_IN_FLIGHT"] = "1000"
	s.env["KAFKA_MAX_IN_FLIGHT_PER_PARTITION"] = "250"
	s.allowBigDeadLetters()
	began := time.Now()
	at := func() string { return fmt.Sprintf("%6.1fs", time.Since(began).Seconds()) }
	s.recordProgress(s.env["KAFKA_CONSUMER_GROUP"])

	hostile := hostileMessages(t, s.topic, 12)
	s.produceHostile(hostile)
	stream := s.startStream("chaos", cfg.rooms, cfg.rate)
	testsupport.WaitFor(t, time.Minute, "a backlog behind the hostile messages", func() (bool, string) {
		n, _ := stream.snapshot()
		return n >= int(cfg.backlog.Seconds()*float64(cfg.rate)), fmt.Sprintf("%d produced", n)
	})
	p := s.startProc(bin, "chaos-0")
	testsupport.WaitFor(t, time.Minute, "the first worker projecting", func() (bool, string) {
		n, err := s.count(`SELECT count(*) FROM events`)
		return err == nil && n >= int64(cfg.rate/2), fmt.Sprintf("%d projected (%v)", n, err)
	})

	t.Logf("%s Pusher down", at())
	s.pusher.SetDown(true)
	raised := expectStall(t, p, "roomcast_dispatcher_stalled", "while Pusher is down")
	time.Sleep(cfg.outageHold)
	s.pusher.SetDown(false)
	t.Logf("%s Pusher back", at())
	if raised {
		expectStallCleared(t, p, "roomcast_dispatcher_stalled", "once Pusher is back")
	}

	t.Logf("%s Postgres killed", at())
	if err := pg.Kill(); err != nil {
		t.Fatalf("kill postgres: %v", err)
	}
	raised = expectStall(t, p, "roomcast_consumer_stalled", "while Postgres is down")
	time.Sleep(cfg.pgDownHold)
	if err := pg.Restart(t.Context()); err != nil {
		t.Fatalf("restart postgres: %v", err)
	}
	t.Logf("%s Postgres restarted", at())
	if raised {
		expectStallCleared(t, p, "roomcast_consumer_stalled", "once Postgres is back")
	}

	var restarts []time.Time
	for k := range cfg.kills {
		time.Sleep(cfg.gaps[k%len(cfg.gaps)])
		if _, err := p.signal(syscall.SIGKILL, 10*time.Second); err == nil {
			t.Fatalf("worker %d exited cleanly on SIGKILL?", k)
		}
		n, _ := s.count(`SELECT count(*) FROM events`)
		t.Logf("%s SIGKILL %d with %d events projected", at(), k+1, n)
		p = s.startProc(bin, fmt.Sprintf("chaos-%d", k+1))
		restarts = append(restarts, time.Now())
	}
	time.Sleep(cfg.tail)
	want := stream.stopStream()
	total := sumCounts(want)
	t.Logf("%s stream ended: %d valid events over %d rooms at %d/s, and %d hostile messages", at(), total, len(want), stream.achieved(), len(hostile))

	// Every valid event projected and delivered.
	eventually(t, cfg.settle, "every valid event projected", func() (bool, string) {
		n, err := s.count(`SELECT count(*) FROM events WHERE room_id LIKE 'chaos-room-%'`)
		return err == nil && n == int64(total), fmt.Sprintf("%d of %d (%v)", n, total, err)
	})
	eventually(t, cfg.settle, "every delivery made", func() (bool, string) {
		n, err := s.count(`SELECT count(*) FROM deliveries WHERE delivered_at IS NULL`)
		return err == nil && n == 0, fmt.Sprintf("%d owed (%v)", n, err)
	})
	t.Logf("%s settled", at())
	if n := s.mustCount(`SELECT count(DISTINCT id) FROM events WHERE room_id LIKE 'chaos-room-%'`); n != int64(total) {
		t.Errorf("distinct valid events stored: %d, want %d", n, total)
	}
	assertGapFree(t, s.roomSeqs(), want)
	if n := s.mustCount(`SELECT count(*) FROM deliveries WHERE parked_at IS NOT NULL`); n != 0 {
		t.Errorf("%d deliveries parked", n)
	}
	sd := s.checkStreamDelivered(want)
	before, perKill := sd.perRestart(restarts)
	t.Logf("%d Pusher deliveries for %d events: %d duplicates; before the first kill (Pusher outage, Postgres crash): %d, after each kill: %v (bound %d each)",
		len(sd.events), total, len(sd.duplicates), before, perKill, dupBound)
	for k, n := range append([]int{before}, perKill...) {
		if n > dupBound {
			t.Errorf("%d duplicate Pusher deliveries in period %d (0: before the first kill), want at most %d", n, k, dupBound)
		}
	}
	s.checkHostileDeadLettered(hostile)

	// The last worker: nothing stalled, ready, stops on SIGTERM.
	expectStallCleared(t, p, "roomcast_consumer_stalled", "at the end")
	expectStallCleared(t, p, "roomcast_dispatcher_stalled", "at the end")
	if took, err := p.signal(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Errorf("the last worker on SIGTERM: %v (after %v)", err, took)
	}
}

// eventually waits up to timeout for cond; unlike waitFor it lets the test
// go on when cond never holds (an error is reported), so that one failing
// part does not hide the others.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, status := cond()
		if ok {
			return true
		}
		if time.Now().After(deadline) {
			t.Errorf("timed out after %v waiting for %s: %s", timeout, what, status)
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tryScrape is scrape without failing the test.
func tryScrape(addr string) (metrics, error) {
	code, body, err := httpGet(addr, "/metrics")
	if err == nil && code != 200 {
		err = fmt.Errorf("GET /metrics: %d", code)
	}
	return parseMetrics(body), err
}

// expectStall waits until p's stall gauge (any label) reads 1 and /readyz
// answers 503; it reports whether the gauge was raised.
func expectStall(t *testing.T, p *proc, gauge, when string) bool {
	t.Helper()
	if m, err := tryScrape(p.addr); err == nil && !m.has(gauge) {
		t.Errorf("%s is not exported: cannot see a stall %s", gauge, when)
		return false
	}
	ok := eventually(t, 30*time.Second, fmt.Sprintf("%s raised %s", gauge, when), func() (bool, string) {
		m, err := tryScrape(p.addr)
		return err == nil && m.sum(gauge) >= 1, fmt.Sprintf("%v (%v)", filterSeries(m, gauge), err)
	})
	if ok {
		m, _ := tryScrape(p.addr)
		t.Logf("%s %s: %v", gauge, when, filterSeries(m, gauge))
	}
	eventually(t, 30*time.Second, "/readyz 503 "+when, func() (bool, string) {
		code, body, err := httpGet(p.addr, "/readyz")
		return code == 503, fmt.Sprintf("%d %q %v", code, strings.TrimSpace(body), err)
	})
	return ok
}

// expectStallCleared waits until p's stall gauge reads 0 on every label and
// /readyz answers 200.
func expectStallCleared(t *testing.T, p *proc, gauge, when string) {
	t.Helper()
	if m, err := tryScrape(p.addr); err == nil && !m.has(gauge) {
		t.Errorf("%s is not exported: cannot see a stall clear %s", gauge, when)
		return
	}
	eventually(t, 60*time.Second, fmt.Sprintf("%s cleared %s", gauge, when), func() (bool, string) {
		m, err := tryScrape(p.addr)
		return err == nil && m.sum(gauge) == 0, fmt.Sprintf("%v (%v)", filterSeries(m, gauge), err)
	})
	eventually(t, 60*time.Second, "/readyz 200 "+when, func() (bool, string) {
		code, body, err := httpGet(p.addr, "/readyz")
		return code == 200, fmt.Sprintf("%d %q %v", code, strings.TrimSpace(body), err)
	})
}
