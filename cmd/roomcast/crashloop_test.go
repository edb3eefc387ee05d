package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roomcast/roomcast/internal/localstack"
	"github.com/roomcast/roomcast/internal/testsupport"
)

// Crash-loop figures: the stream's rate and the bound on the pause after
// the last restart. The target is deliveries resuming within 20 s;
// the test asserts a generous bound only (the machine may be loaded), and
// logs what it measured.
const (
	crashLoopRate       = 4000 // events per second
	crashLoopRooms      = 200
	crashLoopPauseBound = 60 * time.Second
)

// TestCrashLoop runs the real binary as a subprocess against a live stream
// of ~4,000 events/s: a Postgres restart alone is survived with nothing lost
// and nothing delivered twice, and five SIGKILLs 2-4 s apart (each followed
// by a restart, Postgres restarted once in between) lose nothing, keep each
// room's seqs gap-free and in order, deliver few duplicates, and leave the
// stream flowing again soon after the last restart.
//
// It restarts the Postgres cluster the package's tests share, so it must not
// run in parallel with them.
func TestCrashLoop(t *testing.T) {
	pg := testsupport.PostgresServer(t)
	bin := buildBinary(t)
	t.Run("PostgresRestart", func(t *testing.T) { testStreamPostgresRestart(t, bin, pg) })
	t.Run("Kill9Loop", func(t *testing.T) { testKill9Loop(t, bin, pg) })
}

// synchronousCommit makes the stack's database commit synchronously: the
// shared test cluster runs with synchronous_commit=off (speed), and a test
// that restarts Postgres must not lose commits it acknowledged. The workers
// must connect after this.
func (s *stack) synchronousCommit() {
	s.t.Helper()
	dbName := s.dbURL[strings.LastIndexByte(s.dbURL, '/')+1:]
	dbName, _, _ = strings.Cut(dbName, "?")
	if _, err := s.db.Exec(s.t.Context(), `ALTER DATABASE "`+dbName+`" SET synchronous_commit = on`); err != nil {
		s.t.Fatal(err)
	}
}

// crashLoopStack is a stack for a worker subprocess that a test kills: its
// own consumer group, a static group member id, Pusher calls that overlap.
func crashLoopStack(t *testing.T, name string) (*stack, int) {
	s := newStack(t)
	s.synchronousCommit()
	s.env["KAFKA_CONSUMER_GROUP"] = fmt.Sprintf("roomcast-%s-%d", name, time.Now().UnixNano())
	// The restarted worker is the same member of the group (as a pod that
	// keeps its name): static membership (KIP-345). ROOMCAST_TEST_DYNAMIC=1
	// leaves it unset, to compare.
	if os.Getenv("ROOMCAST_TEST_DYNAMIC") != "1" {
		s.env["KAFKA_GROUP_INSTANCE_ID"] = name + "-worker-0"
	}
	s.env["LOG_LEVEL"] = "info"
	// Only the calls in flight at a kill (and their marks not yet written)
	// may reach Pusher twice: at most two turns of PUSHER_MAX_IN_FLIGHT
	// calls of 10 events per kill.
	const maxInFlight = 8
	s.env["PUSHER_MAX_IN_FLIGHT"] = fmt.Sprint(maxInFlight)
	s.pusher.SetLatency(5 * time.Millisecond) // calls overlap
	return s, 2 * maxInFlight * 10
}

// testStreamPostgresRestart: a fast restart of Postgres while the stream
// flows loses nothing and delivers nothing twice.
func testStreamPostgresRestart(t *testing.T, bin string, pg *localstack.Postgres) {
	s, _ := crashLoopStack(t, "pgrestart")
	p := s.startProc(bin, "worker")
	p.waitReady()
	stream := s.startStream("pgr", crashLoopRooms, crashLoopRate)
	testsupport.WaitFor(t, 60*time.Second, "the stream being projected", func() (bool, string) {
		n, err := s.count(`SELECT count(*) FROM events`)
		return err == nil && n >= crashLoopRate, fmt.Sprintf("%d projected (%v)", n, err)
	})
	began := time.Now()
	if err := pg.Restart(t.Context()); err != nil {
		t.Fatalf("restart postgres: %v", err)
	}
	t.Logf("postgres restarted (fast shutdown) in %v", time.Since(began).Round(time.Millisecond))
	time.Sleep(4 * time.Second) // the stream goes on after the restart
	want := stream.stopStream()
	total := sumCounts(want)

	s.waitCount(120*time.Second, int64(total), `SELECT count(*) FROM events`)
	s.waitCount(120*time.Second, 0, `SELECT count(*) FROM deliveries WHERE delivered_at IS NULL`)
	assertGapFree(t, s.roomSeqs(), want)
	if n := s.mustCount(`SELECT count(*) FROM deliveries`); n != int64(total) {
		t.Errorf("deliveries rows: %d, want %d (one per event)", n, total)
	}
	if n := topicSize(t, s.brokers, s.dlq); n != 0 {
		t.Errorf("%d events dead-lettered across a Postgres restart", n)
	}
	sd := s.checkStreamDelivered(want)
	t.Logf("%d events at %d/s across a Postgres restart: %d Pusher deliveries, %d duplicates",
		total, stream.achieved(), len(sd.events), len(sd.duplicates))
	if len(sd.duplicates) != 0 {
		t.Errorf("%d duplicate Pusher deliveries across a Postgres restart, want 0", len(sd.duplicates))
	}
	if took, err := p.signal(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Errorf("worker on SIGTERM: %v (after %v)", err, took)
	}
}

// testKill9Loop kills the worker five times, 2-4 s apart, restarting it at
// once each time, with a Postgres restart in between, while the stream flows.
func testKill9Loop(t *testing.T, bin string, pg *localstack.Postgres) {
	s, dupsPerKill := crashLoopStack(t, "crashloop")
	began := time.Now()
	s.recordProgress(s.env["KAFKA_CONSUMER_GROUP"])
	stream := s.startStream("crash", crashLoopRooms, crashLoopRate)
	p := s.startProc(bin, "run-0")
	testsupport.WaitFor(t, 60*time.Second, "the first worker projecting", func() (bool, string) {
		n, err := s.count(`SELECT count(*) FROM events`)
		return err == nil && n >= crashLoopRate/2, fmt.Sprintf("%d projected (%v)", n, err)
	})

	gaps := []time.Duration{2 * time.Second, 3 * time.Second, 4 * time.Second, 2500 * time.Millisecond, 3500 * time.Millisecond}
	const pgRestartAfter = 2 // Postgres restarts during the third restarted worker's life
	var restarts []time.Time
	procs := []*proc{p}
	for k, gap := range gaps {
		if k == pgRestartAfter {
			time.Sleep(gap / 2)
			if err := pg.Restart(t.Context()); err != nil {
				t.Fatalf("restart postgres: %v", err)
			}
			t.Logf("%6.1fs postgres restarted during worker %d", time.Since(began).Seconds(), k)
			time.Sleep(gap / 2)
		} else {
			time.Sleep(gap)
		}
		if _, err := p.signal(syscall.SIGKILL, 10*time.Second); err == nil {
			t.Fatalf("worker %d exited cleanly on SIGKILL?", k)
		}
		projected, _ := s.count(`SELECT count(*) FROM events`)
		produced, _ := stream.snapshot()
		t.Logf("%6.1fs SIGKILL %d: worker %d killed after %v with %d events projected, %d produced",
			time.Since(began).Seconds(), k+1, k, gap, projected, produced)
		p = s.startProc(bin, fmt.Sprintf("run-%d", k+1))
		procs = append(procs, p)
		restarts = append(restarts, time.Now())
	}
	last := restarts[len(restarts)-1]
	projectedAtLast := s.mustCount(`SELECT count(*) FROM events`)
	group := s.env["KAFKA_CONSUMER_GROUP"]
	stable := make(chan time.Duration, 1)
	ownerCtx, cancelOwner := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancelOwner()
	go func() { stable <- waitGroupOwner(ownerCtx, s, group, last) }()

	time.Sleep(8 * time.Second) // the stream goes on after the last restart
	want := stream.stopStream()
	total := sumCounts(want)
	t.Logf("stream: %d events over %d rooms at %d/s; %d projected at the last restart", total, len(want), stream.achieved(), projectedAtLast)

	s.waitCount(3*time.Minute, int64(total), `SELECT count(*) FROM events`)
	s.waitCount(2*time.Minute, 0, `SELECT count(*) FROM deliveries WHERE delivered_at IS NULL`)
	p.waitReady()

	// Nothing lost: every event projected once, seqs gap-free, one delivery
	// each, nothing parked or dead-lettered.
	if n := s.mustCount(`SELECT count(DISTINCT id) FROM events`); n != int64(total) {
		t.Errorf("distinct event ids: %d, want %d", n, total)
	}
	assertGapFree(t, s.roomSeqs(), want)
	if n := s.mustCount(`SELECT count(*) FROM deliveries`); n != int64(total) {
		t.Errorf("deliveries rows: %d, want %d (one per event)", n, total)
	}
	if n := s.mustCount(`SELECT count(*) FROM deliveries WHERE parked_at IS NOT NULL`); n != 0 {
		t.Errorf("%d deliveries parked", n)
	}
	if n := topicSize(t, s.brokers, s.dlq); n != 0 {
		t.Errorf("%d valid events dead-lettered during the crash loop", n)
	}

	// Pusher: each room's seqs delivered in order; duplicates per kill.
	sd := s.checkStreamDelivered(want)
	before, perKill := sd.perRestart(restarts)
	t.Logf("%d Pusher deliveries for %d events: %d duplicates; after each kill: %v (bound %d per kill)",
		len(sd.events), total, len(sd.duplicates), perKill, dupsPerKill)
	if before != 0 {
		t.Errorf("%d duplicate deliveries before the first kill", before)
	}
	for k, n := range perKill {
		if n > dupsPerKill {
			t.Errorf("%d duplicate Pusher deliveries after SIGKILL %d, want at most %d (the calls in flight)", n, k+1, dupsPerKill)
		}
	}

	// The pause after the last restart.
	resumedProjecting, resumedDelivering := s.resumedAfter(last, sd)
	groupStable := <-stable
	t.Logf("after the last restart: the group had it as its only member after %v, projecting after %v, delivering newly projected events after %v (target 20s)",
		groupStable.Round(time.Millisecond), resumedProjecting.Round(time.Millisecond), resumedDelivering.Round(time.Millisecond))
	for i, q := range procs {
		t.Logf("worker %d: %d \"kafka consume failed\" lines", i, strings.Count(q.tail(1<<20), "kafka consume failed"))
	}
	if resumedDelivering > crashLoopPauseBound {
		t.Errorf("deliveries resumed %v after the last restart, want within %v (target 20s)",
			resumedDelivering.Round(time.Millisecond), crashLoopPauseBound)
	}

	took, err := p.signal(syscall.SIGTERM, 30*time.Second)
	if err != nil {
		t.Errorf("the last worker on SIGTERM: %v", err)
	}
	t.Logf("the last worker stopped %v after SIGTERM", took.Round(time.Millisecond))
}

// resumedAfter measures, from at, when projection of new events resumed
// (the first event stored by a transaction that began after at) and when
// the first of those reached Pusher. It returns -1s for what never happened.
func (s *stack) resumedAfter(at time.Time, sd streamDelivery) (projecting, delivering time.Duration) {
	s.t.Helper()
	projecting, delivering = -time.Second, -time.Second
	rows, err := s.db.Query(s.t.Context(), `SELECT room_id, seq, recorded_at FROM events WHERE recorded_at > $1 AND seq IS NOT NULL`, at)
	if err != nil {
		s.t.Fatal(err)
	}
	after := map[string]bool{}
	var first time.Time
	for rows.Next() {
		var room string
		var seq int64
		var rec time.Time
		if err := rows.Scan(&room, &seq, &rec); err != nil {
			s.t.Fatal(err)
		}
		after[fmt.Sprintf("%s/%d", room, seq)] = true
		if first.IsZero() || rec.Before(first) {
			first = rec
		}
	}
	rows.Close()
	if !first.IsZero() {
		projecting = first.Sub(at)
	}
	for _, e := range sd.events {
		room := strings.TrimPrefix(e.Channel, "private-room-")
		if after[fmt.Sprintf("%s/%d", room, decodePayload(s.t, e).seq())] && e.ReceivedAt.After(at) {
			if d := e.ReceivedAt.Sub(at); delivering < 0 || d < delivering {
				delivering = d
			}
		}
	}
	return projecting, delivering
}

// waitGroupOwner polls the group until one member that was not in it at
// since holds all 12 partitions of the stack's topic (the restarted worker
// alone: a killed worker may stay the group's only member until its session
// expires) and returns how long after since that happened, or -1s if ctx
// ends first.
func waitGroupOwner(ctx context.Context, s *stack, group string, since time.Time) time.Duration {
	old, _ := groupAssignments(s.brokers, group, s.topic) // nil while rebalancing: none of those members can sync
	for ; ctx.Err() == nil; time.Sleep(100 * time.Millisecond) {
		m, err := groupAssignments(s.brokers, group, s.topic)
		if err != nil || len(m) != 1 {
			continue
		}
		for id, parts := range m {
			if _, was := old[id]; !was && len(parts) == 12 {
				return time.Since(since)
			}
		}
	}
	return -time.Second
}
