package main

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roomcast/roomcast/internal/testsupport"

	"github.com/IBM/sarama"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
)

// TestTwoReplicas runs two `roomcast run` processes on one database, topic
// and consumer group: they split the partitions, exactly one dispatches the
// outbox, and when that one is killed the other takes over its dispatching
// and, after the session timeout, its partitions.
func TestTwoReplicas(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)

	s := newStack(t)
	// A group of this test's own, in case KAFKA_BROKERS is a shared cluster.
	group := fmt.Sprintf("roomcast-replicas-%d", time.Now().UnixNano())
	s.env["KAFKA_CONSUMER_GROUP"] = group
	// Only the calls in flight at the kill (and their marks not yet written)
	// may reach Pusher twice: at most two turns of PUSHER_MAX_IN_FLIGHT calls
	// of 10 events.
	const maxInFlight = 8
	s.env["PUSHER_MAX_IN_FLIGHT"] = fmt.Sprint(maxInFlight)
	maxDuplicates := 2 * maxInFlight * 10
	s.pusher.SetLatency(20 * time.Millisecond) // calls overlap
	// Small batches: projection at full speed finished wave 2 between the
	// check that a quarter of it was in and the kill (seen at ~8,000
	// events/s). At 20 per transaction the kill lands mid-stream.
	s.env["PROJECTION_BATCH_MAX"] = "20"

	const rooms = 40
	rs := newReplicaScript("replicas", rooms)
	wave1 := rs.wave(100) // 4000 events

	procs := []*proc{s.startProc(bin, "replica-a"), s.startProc(bin, "replica-b")}
	for _, p := range procs {
		p.waitReady()
	}
	// Both are in the group, each with a share of the 12 partitions, before
	// anything is produced.
	var members map[string][]int32
	testsupport.WaitFor(t, 60*time.Second, "two group members sharing the partitions", func() (bool, string) {
		m, err := groupAssignments(s.brokers, group, s.topic)
		members = m
		if err != nil {
			return false, err.Error()
		}
		n := 0
		for _, parts := range m {
			if len(parts) == 0 {
				return false, fmt.Sprintf("a member without partitions: %v", m)
			}
			n += len(parts)
		}
		return len(m) == 2 && n == 12, fmt.Sprint(m)
	})
	t.Logf("group %s: %v", group, members)

	// ---- wave 1: both up ----
	start := time.Now()
	s.produceEvents(wave1...)
	s.waitCount(60*time.Second, int64(len(wave1)), `SELECT count(*) FROM events`)
	projected1 := time.Since(start)
	s.waitCount(60*time.Second, 0, `SELECT count(*) FROM deliveries WHERE delivered_at IS NULL`)
	drained1 := time.Since(start)

	ms := []metrics{scrape(t, procs[0].addr), scrape(t, procs[1].addr)}
	leader, follower := -1, -1
	for i, m := range ms {
		consumed := m.sum("roomcast_events_consumed_total")
		calls := m.sum("roomcast_pusher_calls_total", `status="200"`)
		t.Logf("wave 1: %s consumed %v events, made %v accepted Pusher calls (%v in all)",
			procName(i), consumed, calls, m.sum("roomcast_pusher_calls_total"))
		if consumed == 0 {
			t.Errorf("%s consumed nothing: the replicas did not split the partitions", procName(i))
		}
		if calls > 0 {
			if leader >= 0 {
				t.Errorf("both replicas made Pusher calls while both were up (%v and %v)",
					ms[leader].sum("roomcast_pusher_calls_total", `status="200"`), calls)
			}
			leader = i
		} else {
			follower = i
		}
	}
	if leader < 0 || follower < 0 {
		t.Fatalf("want exactly one replica dispatching; leader %d, follower %d", leader, follower)
	}
	if n := ms[follower].sum("roomcast_pusher_calls_total"); n != 0 {
		t.Errorf("the follower made %v Pusher calls (of any status)", n)
	}
	if sum := ms[0].sum("roomcast_events_consumed_total") + ms[1].sum("roomcast_events_consumed_total"); sum < float64(len(wave1)) {
		t.Errorf("the replicas consumed %v events together, want at least %d", sum, len(wave1))
	}
	// Every call the fake answered came from the leader.
	if got, want := acceptedCalls(s), ms[leader].sum("roomcast_pusher_calls_total", `status="200"`); float64(got) != want {
		t.Errorf("the fake Pusher accepted %d calls, the leader counts %v", got, want)
	}
	s.assertReplicaState(rs, len(wave1), 0)
	dups1 := s.assertRoomDeliveries(rs)
	if dups1 != 0 {
		t.Errorf("%d duplicate Pusher deliveries with no kill, want 0", dups1)
	}
	pusherEvents1 := len(s.pusher.Events())
	if pusherEvents1 != len(wave1) {
		t.Errorf("%d Pusher events for %d deliveries", pusherEvents1, len(wave1))
	}
	t.Logf("wave 1: %d events projected in %v, delivered in %v with %d Pusher calls; %s leads",
		len(wave1), projected1.Round(time.Millisecond), drained1.Round(time.Millisecond), len(s.pusher.Calls()), procName(leader))

	// ---- wave 2: kill the leader mid-stream ----
	// The kill must land while the leader still has some of its share to
	// project, however fast it projects: wave 2 is produced 400 events at a
	// time while a quarter of it gets projected and the leader is killed.
	// (Produced at once, 2,000 and then 8,000 events were all projected
	// before the kill in some runs, as batches got faster.)
	wave2 := rs.wave(200)
	total := len(wave1) + len(wave2)
	followerConsumedBefore := ms[follower].sum("roomcast_events_consumed_total")
	produced := make(chan error, 1)
	go func() {
		var err error
		for i := 0; i < len(wave2) && err == nil; i += 400 {
			chunk := wave2[i:min(i+400, len(wave2))]
			msgs := make([]kmsg, len(chunk))
			for j, e := range chunk {
				msgs[j] = eventMsg(e)
			}
			err = s.tryProduce(msgs...)
		}
		produced <- err
	}()
	testsupport.WaitFor(t, 60*time.Second, "a quarter of the second wave in Postgres", func() (bool, string) {
		n, err := s.count(`SELECT count(*) FROM events`)
		return err == nil && n >= int64(len(wave1)+len(wave2)/4), fmt.Sprintf("%d of %d (%v)", n, total, err)
	})
	before := scrape(t, procs[follower].addr)
	if n := before.sum("roomcast_pusher_calls_total"); n != 0 {
		t.Errorf("the follower made %v Pusher calls before the kill", n)
	}
	if _, err := procs[leader].signal(syscall.SIGKILL, 10*time.Second); err == nil {
		t.Fatalf("the leader exited cleanly on SIGKILL?")
	}
	killed := time.Now()
	projectedAtKill := s.mustCount(`SELECT count(*) FROM events`)
	pendingAtKill := s.mustCount(`SELECT count(*) FROM deliveries WHERE delivered_at IS NULL`)
	t.Logf("SIGKILL %s with %d of %d events projected, %d deliveries pending, %d Pusher events delivered",
		procName(leader), projectedAtKill, total, pendingAtKill, len(s.pusher.Events()))
	if projectedAtKill >= int64(total) {
		t.Fatalf("everything was projected before the kill: the test did not kill mid-stream")
	}

	survivor := procs[follower]
	var takeover time.Duration
	testsupport.WaitFor(t, 15*time.Second, "the survivor to dispatch", func() (bool, string) {
		code, body, err := httpGet(survivor.addr, "/metrics")
		if err != nil || code != 200 {
			return false, fmt.Sprintf("GET /metrics: %d %v", code, err)
		}
		n := parseMetrics(body).sum("roomcast_pusher_calls_total", `status="200"`)
		takeover = time.Since(killed)
		return n > 0, fmt.Sprintf("%v accepted calls", n)
	})
	var regrouped time.Duration
	testsupport.WaitFor(t, 60*time.Second, "the survivor alone in the group with all 12 partitions", func() (bool, string) {
		m, err := groupAssignments(s.brokers, group, s.topic)
		if err != nil {
			return false, err.Error()
		}
		regrouped = time.Since(killed)
		for _, parts := range m {
			if len(m) == 1 && len(parts) == 12 {
				return true, ""
			}
		}
		return false, fmt.Sprint(m)
	})
	if err := <-produced; err != nil {
		t.Fatalf("produce wave 2: %v", err)
	}
	s.waitCount(60*time.Second, int64(total), `SELECT count(*) FROM events`)
	projected := time.Since(killed)
	s.waitCount(60*time.Second, 0, `SELECT count(*) FROM deliveries WHERE delivered_at IS NULL`)
	drained := time.Since(killed)

	// What the leader had in flight was not acknowledged, so the survivor
	// consumes it again, even when Postgres committed it after the kill (a
	// COMMIT it had already received): then after the events are all in
	// Postgres, as duplicates.
	var after metrics
	testsupport.WaitFor(t, 30*time.Second, "the survivor to consume the leader's unacknowledged tail", func() (bool, string) {
		after = scrape(t, survivor.addr)
		got, was := after.sum("roomcast_events_consumed_total"), before.sum("roomcast_events_consumed_total")
		return got > was, fmt.Sprintf("%v consumed before the kill, %v now", was, got)
	})
	s.assertReplicaState(rs, total, 0)
	duplicates := s.assertRoomDeliveries(rs)
	t.Logf("after the kill: the survivor dispatched after %v, owned all partitions after %v, all projected after %v, outbox drained after %v",
		takeover.Round(time.Millisecond), regrouped.Round(time.Millisecond), projected.Round(time.Millisecond), drained.Round(time.Millisecond))
	t.Logf("the survivor consumed %v events in all (%v before wave 2), re-projected %v as duplicates; %d Pusher events for %d deliveries: %d duplicates (bound %d)",
		after.sum("roomcast_events_consumed_total"), followerConsumedBefore, after.sum("roomcast_events_projected_total", `outcome="duplicate"`),
		len(s.pusher.Events()), total, duplicates, maxDuplicates)
	if duplicates > maxDuplicates {
		t.Errorf("%d duplicate Pusher deliveries after one SIGKILL of the leader, want at most %d (the calls in flight)", duplicates, maxDuplicates)
	}

	if _, err := survivor.signal(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Errorf("survivor on SIGTERM: %v", err)
	}
}

func procName(i int) string { return []string{"replica-a", "replica-b"}[i] }

// replicaScript produces, wave after wave, events over many rooms that all
// change something (each gets a seq and one delivery).
type replicaScript struct {
	rooms   []string
	next    map[string]int // the room's next message number
	perRoom map[string]int // events so far
}

func newReplicaScript(prefix string, rooms int) *replicaScript {
	rs := &replicaScript{next: map[string]int{}, perRoom: map[string]int{}}
	for r := range rooms {
		rs.rooms = append(rs.rooms, fmt.Sprintf("%s-room-%02d", prefix, r))
	}
	return rs
}

// wave returns n events per room, rooms interleaved as live traffic: two
// joins in a room's first wave, then messages, every 10th with an edit of an
// earlier one and every 25th with a delete of another.
func (rs *replicaScript) wave(n int) []*chattest.Event {
	perRoom := map[string][]*chattest.Event{}
	for _, room := range rs.rooms {
		var es []*chattest.Event
		if rs.perRoom[room] == 0 {
			es = append(es, chattest.MemberJoined(room, "u-1"), chattest.MemberJoined(room, "u-2"))
		}
		for len(es) < n {
			rs.next[room]++
			i := rs.next[room]
			id := fmt.Sprintf("%s-m%04d", room, i)
			es = append(es, chattest.MessageCreated(room, id, fmt.Sprintf("message %d in %s", i, room)))
			if i%10 == 0 {
				target := fmt.Sprintf("%s-m%04d", room, i-5)
				es = append(es, chattest.MessageEdited(room, target, "edited "+target))
			}
			if i%25 == 0 {
				es = append(es, chattest.MessageDeleted(room, fmt.Sprintf("%s-m%04d", room, i-3)))
			}
		}
		// A cut edit or delete is fine: every event targets an earlier message.
		perRoom[room] = es[:n]
		rs.perRoom[room] += n
	}
	var out []*chattest.Event
	for i := range n {
		for _, room := range rs.rooms {
			out = append(out, perRoom[room][i])
		}
	}
	return out
}

// assertReplicaState checks Postgres: total events once each, every room
// gap-free, one delivery per event, all delivered, parked as given.
func (s *stack) assertReplicaState(rs *replicaScript, total int, parked int64) {
	t := s.t
	t.Helper()
	if n := s.mustCount(`SELECT count(*) FROM events`); n != int64(total) {
		t.Errorf("events rows: %d, want %d", n, total)
	}
	if n := s.mustCount(`SELECT count(DISTINCT id) FROM events`); n != int64(total) {
		t.Errorf("distinct event ids: %d, want %d", n, total)
	}
	assertGapFree(t, s.roomSeqs(), rs.perRoom)
	if n := s.mustCount(`SELECT count(*) FROM deliveries`); n != int64(total) {
		t.Errorf("deliveries rows: %d, want %d (one per event)", n, total)
	}
	if n := s.mustCount(`SELECT count(*) FROM deliveries WHERE delivered_at IS NULL`); n != 0 {
		t.Errorf("%d deliveries not delivered", n)
	}
	if n := s.mustCount(`SELECT count(*) FROM deliveries WHERE parked_at IS NOT NULL`); n != parked {
		t.Errorf("%d deliveries parked, want %d", n, parked)
	}
}

// assertRoomDeliveries checks what the fake Pusher received on each room's
// channel: every seq 1..n, first occurrences in order, a duplicate under the
// same name; it returns the number of duplicates.
func (s *stack) assertRoomDeliveries(rs *replicaScript) int {
	t := s.t
	t.Helper()
	duplicates := 0
	for _, room := range rs.rooms {
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
		if len(firsts) != rs.perRoom[room] {
			t.Errorf("room %s: %d distinct seqs delivered, want %d", room, len(firsts), rs.perRoom[room])
		}
		for i, seq := range firsts {
			if seq != int64(i+1) {
				t.Errorf("room %s: first deliveries of each seq out of order at %d: %v", room, i, firsts)
				break
			}
		}
	}
	return duplicates
}

// acceptedCalls counts the calls the fake Pusher answered with 200.
func acceptedCalls(s *stack) int {
	n := 0
	for _, c := range s.pusher.Calls() {
		if c.Status == 200 {
			n++
		}
	}
	return n
}

// groupAssignments describes a consumer group: member id -> its partitions
// of topic, sorted. A group that is rebalancing is reported as an error.
func groupAssignments(brokers []string, group, topic string) (map[string][]int32, error) {
	cfg := sarama.NewConfig()
	cfg.ClientID = "roomcast-test-admin"
	admin, err := sarama.NewClusterAdmin(brokers, cfg)
	if err != nil {
		return nil, err
	}
	defer func() { _ = admin.Close() }()
	descs, err := admin.DescribeConsumerGroups([]string{group})
	if err != nil {
		return nil, err
	}
	if len(descs) != 1 {
		return nil, fmt.Errorf("%d group descriptions", len(descs))
	}
	d := descs[0]
	if d.Err != sarama.ErrNoError {
		return nil, d.Err
	}
	if !strings.EqualFold(d.State, "Stable") {
		return nil, fmt.Errorf("group state %s", d.State)
	}
	out := map[string][]int32{}
	for id, m := range d.Members {
		a, err := m.GetMemberAssignment()
		if err != nil {
			return nil, fmt.Errorf("member %s: %w", id, err)
		}
		var parts []int32
		if a != nil {
			parts = slices.Clone(a.Topics[topic])
		}
		sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
		out[id] = parts
	}
	return out, nil
}
