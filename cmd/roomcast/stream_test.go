package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/fakepusher"
)

// liveStream produces message.created events over many rooms at a steady
// rate until stopped, as upstream services do while roomcast crashes. Every
// event changes its room, so a room's nth event gets seq n.
type liveStream struct {
	s      *stack
	prefix string
	rooms  int
	rate   int // events per second
	began  time.Time

	mu       sync.Mutex
	ended    time.Time
	perRoom  map[string]int
	produced int
	err      error

	stop chan struct{}
	done chan struct{}
}

// startStream begins producing rate events/s over rooms rooms, in batches
// of what is due every 50 ms, until stopStream.
func (s *stack) startStream(prefix string, rooms, rate int) *liveStream {
	ls := &liveStream{s: s, prefix: prefix, rooms: rooms, rate: rate, perRoom: map[string]int{},
		stop: make(chan struct{}), done: make(chan struct{}), began: time.Now()}
	go ls.run()
	s.t.Cleanup(func() { ls.halt() })
	return ls
}

func (ls *liveStream) room(r int) string { return fmt.Sprintf("%s-room-%03d", ls.prefix, r) }

func (ls *liveStream) run() {
	defer close(ls.done)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	next := 0
	for {
		select {
		case <-ls.stop:
			return
		case <-tick.C:
		}
		// What the rate owes by now: a slow send is made up by the next
		// batches (up to a second's worth at once).
		perBatch := min(int(time.Since(ls.began).Seconds()*float64(ls.rate))-next, ls.rate)
		if perBatch <= 0 {
			continue
		}
		msgs := make([]kmsg, 0, perBatch)
		ls.mu.Lock()
		counts := map[string]int{}
		for range perBatch {
			room := ls.room(next % ls.rooms)
			next++
			counts[room]++
			i := ls.perRoom[room] + counts[room]
			e := chattest.MessageCreated(room, fmt.Sprintf("%s-m%05d", room, i), fmt.Sprintf("message %d in %s", i, room))
			msgs = append(msgs, eventMsg(e))
		}
		ls.mu.Unlock()
		err := ls.s.tryProduce(msgs...)
		ls.mu.Lock()
		if err != nil {
			ls.err = err
			ls.mu.Unlock()
			return
		}
		for room, n := range counts {
			ls.perRoom[room] += n
		}
		ls.produced += len(msgs)
		ls.ended = time.Now()
		ls.mu.Unlock()
	}
}

// halt stops producing and waits for the batch in flight.
func (ls *liveStream) halt() {
	select {
	case <-ls.stop:
	default:
		close(ls.stop)
	}
	<-ls.done
}

// stopStream stops producing and returns how many events were produced per room.
func (ls *liveStream) stopStream() map[string]int {
	ls.s.t.Helper()
	ls.halt()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.err != nil {
		ls.s.t.Fatalf("produce: %v", ls.err)
	}
	out := make(map[string]int, len(ls.perRoom))
	for room, n := range ls.perRoom {
		out[room] = n
	}
	return out
}

// achieved is the rate the stream kept, in events per second.
func (ls *liveStream) achieved() int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if d := ls.ended.Sub(ls.began).Seconds(); d > 0 {
		return int(float64(ls.produced) / d)
	}
	return 0
}

// snapshot returns how many events were produced so far, in all and per room.
func (ls *liveStream) snapshot() (int, map[string]int) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	out := make(map[string]int, len(ls.perRoom))
	for room, n := range ls.perRoom {
		out[room] = n
	}
	return ls.produced, out
}

// sumCounts adds up per-room counts.
func sumCounts(perRoom map[string]int) int {
	n := 0
	for _, v := range perRoom {
		n += v
	}
	return n
}

// roomMaxSeqs is each room's highest projected seq.
func (s *stack) roomMaxSeqs() map[string]int64 {
	s.t.Helper()
	rows, err := s.db.Query(context.Background(), `SELECT room_id, max(seq) FROM events WHERE seq IS NOT NULL GROUP BY room_id`)
	if err != nil {
		s.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var room string
		var seq int64
		if err := rows.Scan(&room, &seq); err != nil {
			s.t.Fatal(err)
		}
		out[room] = seq
	}
	if err := rows.Err(); err != nil {
		s.t.Fatal(err)
	}
	return out
}

// streamDelivery is what reached Pusher for a stream: each room's seqs
// 1..n (first deliveries in order), and the duplicates.
type streamDelivery struct {
	events     []fakepusher.Event // room events of the stream, in acceptance order
	duplicates []fakepusher.Event // deliveries of a (room, seq) already delivered
}

// checkStreamDelivered asserts that every room of want got seqs 1..want[room]
// on its channel, each first delivered in order, duplicates only of the same
// event, and returns what it saw.
func (s *stack) checkStreamDelivered(want map[string]int) streamDelivery {
	t := s.t
	t.Helper()
	var sd streamDelivery
	seen := map[string]map[int64]string{}
	next := map[string]int64{}
	for _, e := range s.pusher.Events() {
		room, ok := strings.CutPrefix(e.Channel, domain.RoomChannelPrefix)
		if !ok {
			continue
		}
		if _, ours := want[room]; !ours {
			continue
		}
		sd.events = append(sd.events, e)
		p := decodePayload(t, e)
		seq := p.seq()
		if seen[room] == nil {
			seen[room] = map[int64]string{}
		}
		if id, dup := seen[room][seq]; dup {
			sd.duplicates = append(sd.duplicates, e)
			if id != p["id"] {
				t.Errorf("room %s seq %d delivered as %v and as %v", room, seq, id, p["id"])
			}
			continue
		}
		seen[room][seq], _ = p["id"].(string)
		if next[room]++; seq != next[room] {
			t.Errorf("room %s: seq %d first delivered after seq %d", room, seq, next[room]-1)
			next[room] = seq
		}
	}
	for room, n := range want {
		if got := len(seen[room]); got != n {
			t.Errorf("room %s: %d distinct seqs delivered, want %d", room, got, n)
		}
	}
	return sd
}

// perRestart attributes the duplicates to the restart after which they
// were delivered (Pusher's receipt at or after restarts[k]); before counts
// those delivered before the first restart.
func (sd streamDelivery) perRestart(restarts []time.Time) (before int, after []int) {
	after = make([]int, len(restarts))
	for _, e := range sd.duplicates {
		k := -1
		for i, at := range restarts {
			if !e.ReceivedAt.Before(at) {
				k = i
			}
		}
		if k < 0 {
			before++
			continue
		}
		after[k]++
	}
	return before, after
}

// progressLog samples, every second until stopped, how many events are
// projected and delivered and the state of the consumer group: the timeline
// a failing crash test logs.
type progressLog struct {
	mu    sync.Mutex
	lines []string
	stop  chan struct{}
	done  chan struct{}
}

func (s *stack) recordProgress(group string) *progressLog {
	pl := &progressLog{stop: make(chan struct{}), done: make(chan struct{})}
	began := time.Now()
	go func() {
		defer close(pl.done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-pl.stop:
				return
			case <-tick.C:
			}
			projected, err := s.count(`SELECT count(*) FROM events`)
			state := groupState(s.brokers, group)
			line := fmt.Sprintf("%6.1fs projected %d (%v) delivered %d group %s",
				time.Since(began).Seconds(), projected, err, len(s.pusher.Calls()), state)
			pl.mu.Lock()
			pl.lines = append(pl.lines, line)
			pl.mu.Unlock()
		}
	}()
	s.t.Cleanup(func() {
		pl.halt()
		if s.t.Failed() {
			s.t.Logf("progress (Pusher calls counted as delivered):\n%s", pl.String())
		}
	})
	return pl
}

func (pl *progressLog) halt() {
	select {
	case <-pl.stop:
	default:
		close(pl.stop)
	}
	<-pl.done
}

func (pl *progressLog) String() string {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return strings.Join(pl.lines, "\n")
}

// groupState describes a consumer group in a few words: its state and its
// members with how many partitions each holds.
func groupState(brokers []string, group string) string {
	cfg := sarama.NewConfig()
	cfg.ClientID = "roomcast-test-admin"
	admin, err := sarama.NewClusterAdmin(brokers, cfg)
	if err != nil {
		return err.Error()
	}
	defer func() { _ = admin.Close() }()
	descs, err := admin.DescribeConsumerGroups([]string{group})
	if err != nil || len(descs) != 1 {
		return fmt.Sprintf("describe: %v", err)
	}
	d := descs[0]
	var members []string
	for id, m := range d.Members {
		n := 0
		if a, err := m.GetMemberAssignment(); err == nil && a != nil {
			for _, parts := range a.Topics {
				n += len(parts)
			}
		}
		members = append(members, fmt.Sprintf("%s:%d", id[max(0, len(id)-6):], n))
	}
	slices.Sort(members)
	return fmt.Sprintf("%s %v", d.State, members)
}
