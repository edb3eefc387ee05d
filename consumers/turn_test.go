package consumers

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/projections"
)

// gatedProjector records the batches it is given (by event id) and holds
// each one until the test lets it finish, with an error or not.
type gatedProjector struct {
	mu       sync.Mutex
	finishes []chan error
	started  chan gatedBatch
}

type gatedBatch struct {
	ids    []string
	finish chan error // the batch returns what is sent here
}

func newGatedProjector() *gatedProjector {
	return &gatedProjector{started: make(chan gatedBatch, 16)}
}

func (g *gatedProjector) ProjectBatch(_ context.Context, items []projections.Item) ([]projections.Result, error) {
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.Env.ID
	}
	finish := make(chan error, 1)
	g.mu.Lock()
	g.finishes = append(g.finishes, finish)
	g.mu.Unlock()
	g.started <- gatedBatch{ids, finish}
	if err := <-finish; err != nil {
		return nil, err
	}
	return make([]projections.Result, len(items)), nil
}

// chain returns n turns of one key, each linked to the one before.
func chain(n int) []*turn {
	ts := make([]*turn, n)
	for i := range ts {
		ts[i] = &turn{}
		if i > 0 {
			ts[i].prev.Store(ts[i-1])
		}
	}
	return ts
}

type submitted struct {
	id  string
	err error
}

func submit(b *Batcher, id string, t *turn, out chan<- submitted) {
	ctx := context.Background()
	if t != nil {
		ctx = withTurn(ctx, t)
	}
	go func() {
		_, err := b.Project(ctx, domain.Envelope{ID: id}, projections.Origin{Partition: -1})
		out <- submitted{id, err}
	}()
}

// expectBatch waits for the next batch, checks it and returns its finish.
func expectBatch(t *testing.T, g *gatedProjector, want ...string) chan<- error {
	t.Helper()
	select {
	case got := <-g.started:
		if !slices.Equal(got.ids, want) {
			t.Fatalf("batch %v, want %v", got.ids, want)
		}
		return got.finish
	case <-time.After(10 * time.Second):
		t.Fatalf("no batch started, want %v", want)
		return nil
	}
}

func expectNoBatch(t *testing.T, g *gatedProjector) {
	t.Helper()
	select {
	case got := <-g.started:
		t.Fatalf("batch %v started, want none yet", got.ids)
	case <-time.After(100 * time.Millisecond):
	}
}

func startBatcher(t *testing.T, g *gatedProjector) *Batcher {
	t.Helper()
	b := NewBatcher(g, BatcherConfig{MaxBatch: 100, Concurrency: 2})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = b.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		// Let whatever still runs finish so that Run can return.
		for {
			g.mu.Lock()
			for _, f := range g.finishes {
				select {
				case f <- nil: // not finished by the test (it failed half-way)
				default:
				}
			}
			g.mu.Unlock()
			select {
			case <-done:
				return
			case <-g.started:
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	return b
}

// A later event of a room never joins a batch while an earlier one is in a
// transaction that has not committed; once it has, the room's waiting events
// go together, in order.
func TestBatcherLaterEventWaitsForTheEarlierOnesCommit(t *testing.T) {
	g := newGatedProjector()
	b := startBatcher(t, g)
	room := chain(3)
	answers := make(chan submitted, 8)

	submit(b, "m1", room[0], answers)
	m1 := expectBatch(t, g, "m1") // running, not committed
	submit(b, "m3", room[2], answers)
	submit(b, "m2", room[1], answers)
	time.Sleep(50 * time.Millisecond) // both handed in before the other room's event
	submit(b, "other", nil, answers)
	expectBatch(t, g, "other") <- nil // the free transaction takes what may go
	if a := <-answers; a.id != "other" || a.err != nil {
		t.Fatalf("answer %+v, want other committed", a)
	}
	expectNoBatch(t, g) // m2 and m3 still wait for m1
	m1 <- nil
	if a := <-answers; a.id != "m1" || a.err != nil {
		t.Fatalf("answer %+v, want m1 committed", a)
	}
	expectBatch(t, g, "m2", "m3") <- nil // together, in the room's order although m3 came first
}

// When the transaction of an earlier event fails, the later one does not go
// ahead: it waits until the earlier one, handed in again (its handler
// retries), has committed.
func TestBatcherLaterEventWaitsThroughAFailedBatch(t *testing.T) {
	g := newGatedProjector()
	b := startBatcher(t, g)
	room := chain(2)
	answers := make(chan submitted, 8)

	submit(b, "m1", room[0], answers)
	m1 := expectBatch(t, g, "m1")
	submit(b, "m2", room[1], answers)
	expectNoBatch(t, g)
	m1 <- errors.New("postgres restarting")
	if a := <-answers; a.id != "m1" || a.err == nil {
		t.Fatalf("answer %+v, want m1 failed", a)
	}
	expectNoBatch(t, g) // m1 failed: m2 must not overtake it
	submit(b, "m1", room[0], answers)
	select {
	case got := <-g.started:
		switch {
		case slices.Equal(got.ids, []string{"m1", "m2"}): // m2 right behind m1, in one transaction
			got.finish <- nil
		case slices.Equal(got.ids, []string{"m1"}):
			expectNoBatch(t, g) // m2 waits for m1's commit this time too
			got.finish <- nil
			expectBatch(t, g, "m2") <- nil
		default:
			t.Fatalf("batch %v, want m1 first", got.ids)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("m1 handed in again: no batch")
	}
	got := []string{(<-answers).id, (<-answers).id}
	if !slices.Equal(got, []string{"m1", "m2"}) && !slices.Equal(got, []string{"m2", "m1"}) {
		t.Fatalf("answers %v, want m1 and m2", got)
	}
}

// An earlier event settled outside the batcher (dead-lettered, then acked by
// the subscriber) releases the later ones.
func TestBatcherEventReleasedByAnAckElsewhere(t *testing.T) {
	g := newGatedProjector()
	b := startBatcher(t, g)
	room := chain(2)
	answers := make(chan submitted, 8)

	submit(b, "m2", room[1], answers)
	expectNoBatch(t, g)
	room[0].markDone() // m1 was dead-lettered (then acked)
	expectBatch(t, g, "m2") <- nil
	if a := <-answers; a.id != "m2" || a.err != nil {
		t.Fatalf("answer %+v", a)
	}
}

// firstPending skips done turns (even one done before its predecessor);
// acked ones are dropped from the chain, done ones not yet acked stay so that
// a dead letter can wait for them.
func TestTurnFirstPending(t *testing.T) {
	ts := chain(4)
	if p := ts[3].firstPending(); p != ts[2] {
		t.Fatalf("firstPending = %p, want the previous turn", p)
	}
	ts[2].markDone() // dead-lettered before ts[1] settled
	if p := ts[3].firstPending(); p != ts[1] {
		t.Fatalf("firstPending after the previous one is done = %p, want the one before it", p)
	}
	ts[0].markDone()
	ts[1].markDone()
	if p := ts[3].firstPending(); p != nil {
		t.Fatalf("firstPending with every earlier turn done = %p, want nil", p)
	}
	if !ts[3].earlierUnacked() {
		t.Errorf("earlierUnacked with done turns not acked = false")
	}
	for _, x := range ts[:3] {
		x.acked.Store(true)
	}
	if ts[3].earlierUnacked() {
		t.Errorf("earlierUnacked with every earlier turn acked = true")
	}
	if p := ts[3].firstPending(); p != nil || ts[3].prev.Load() != nil {
		t.Errorf("firstPending = %p and prev = %p once the earlier turns are acked, want both nil (dropped)", p, ts[3].prev.Load())
	}
}

// A dead letter waits until the earlier messages of its room are acked (their
// dead letters published first), and gives up when its message's context ends.
func TestTurnWaitEarlierAcked(t *testing.T) {
	ts := chain(2)
	waited := make(chan struct{})
	go func() {
		ts[1].waitEarlierAcked(context.Background())
		close(waited)
	}()
	select {
	case <-waited:
		t.Fatal("waitEarlierAcked returned while the earlier message is unacked")
	case <-time.After(50 * time.Millisecond):
	}
	ts[0].markDone()
	ts[0].acked.Store(true)
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("waitEarlierAcked still waits after the earlier message was acked")
	}
	stuck := chain(2)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	stuck[1].waitEarlierAcked(ctx) // returns once ctx ends
}
