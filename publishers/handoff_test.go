package publishers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/fakepusher"
	"github.com/roomcast/roomcast/projections"
	"github.com/roomcast/roomcast/publishers"
)

// countingOutbox is the real outbox, counting the deliveries the dispatcher
// reads from it.
type countingOutbox struct {
	*projections.Outbox
	read  atomic.Int64 // deliveries
	reads atomic.Int64 // calls
}

func (o *countingOutbox) PendingExcept(ctx context.Context, limit int, exclude []int64, skipRooms []string) ([]domain.Delivery, error) {
	ds, err := o.Outbox.PendingExcept(ctx, limit, exclude, skipRooms)
	o.read.Add(int64(len(ds)))
	o.reads.Add(1)
	return ds, err
}

func (o *countingOutbox) PendingInRooms(ctx context.Context, rooms []string, after []int64, limits []int) ([]domain.Delivery, error) {
	ds, err := o.Outbox.PendingInRooms(ctx, rooms, after, limits)
	o.read.Add(int64(len(ds)))
	o.reads.Add(1)
	return ds, err
}

// useHandoff replaces the (not yet started) dispatcher by one reading the
// outbox through a countingOutbox, with cfg, and hands it the deliveries of
// the projector's batches, as `roomcast run` does.
func (f *fixture) useHandoff(cfg publishers.DispatcherConfig) *countingOutbox {
	o := &countingOutbox{Outbox: f.outbox}
	f.dispatcher = publishers.NewDispatcher(o, f.client, cfg)
	f.projector.OnDeliveriesOwed(f.dispatcher.Wake)
	f.projector.HandOffDeliveries(f.dispatcher.Handoff)
	return o
}

// newHandoffFixture returns a running fixture whose dispatcher is handed
// the batches' deliveries and reads the outbox only when woken (no polls),
// once its first read is done.
func newHandoffFixture(t *testing.T) (*fixture, *countingOutbox) {
	t.Helper()
	f := newIdleFixture(t)
	cfg := dispatcherConfig
	cfg.PollInterval = time.Hour
	o := f.useHandoff(cfg)
	f.start()
	f.eventually("the dispatcher's first read", func() bool { return o.reads.Load() > 0 })
	return f, o
}

// projectBatch projects es in one batch and fails the test when any fails.
func (f *fixture) projectBatch(es ...*chattest.Event) {
	f.t.Helper()
	items := make([]projections.Item, len(es))
	for i, e := range es {
		items[i] = projections.Item{Env: e.Envelope(f.t), Origin: noKafka}
	}
	results, err := f.projector.ProjectBatch(f.t.Context(), items)
	if err != nil {
		f.t.Fatalf("project a batch: %v", err)
	}
	for i, r := range results {
		if r.Err != nil {
			f.t.Fatalf("project %s %s: %v", es[i].Type, es[i].ID, r.Err)
		}
	}
}

// seqsOn returns the seqs of the events the fake received on a room's channel, in order.
func seqsOn(t *testing.T, srv *fakepusher.Server, room string) []int {
	t.Helper()
	var seqs []int
	for _, e := range srv.EventsOn(domain.RoomChannel(room)) {
		var p struct{ Seq int }
		if err := json.Unmarshal([]byte(e.Data), &p); err != nil {
			t.Fatalf("%s: %v", e.Data, err)
		}
		seqs = append(seqs, p.Seq)
	}
	return seqs
}

// A batch's deliveries reach Pusher without the dispatcher reading them back
// from the outbox, and the outbox is emptied as usual.
func TestHandoffSkipsReadingTheOutbox(t *testing.T) {
	t.Parallel()
	f, o := newHandoffFixture(t)
	rooms := []string{"room-a", "room-b", "room-c"}
	// The first batch of each room starts at seq 1, with nothing before it,
	// and from then on each room's next seq follows the last one seen.
	for i := range 10 {
		var es []*chattest.Event
		for _, r := range rooms {
			for j := range 5 {
				es = append(es, chattest.MessageCreated(r, fmt.Sprintf("%s-%d-%d", r, i, j), "hello"))
			}
		}
		es = append(es, chattest.UserNotification([]string{"u-1", "u-2"}, fmt.Sprintf("note %d", i)))
		f.projectBatch(es...)
		f.waitEvents((i + 1) * 17)
	}
	f.waitSettled()
	for _, r := range rooms {
		f.wantSeqs(r, 50)
	}
	if n := len(f.srv.EventsOn("private-user-u-1")); n != 10 {
		t.Errorf("user u-1 got %d notifications, want 10", n)
	}
	// 160 deliveries were owed. A call that fails (a kept-alive connection
	// the fake closed, say) makes the dispatcher forget what it holds and
	// read it again, so allow for two batches' worth; without handoffs all
	// 160 are read.
	if read := o.read.Load(); read > 2*16 {
		t.Errorf("the dispatcher read %d deliveries from the outbox, want at most 32 (a failed call's re-read)", read)
	}
}

// A new room's first deliveries (seq 1 on) have nothing before them: they
// are taken as handed over, not read back.
func TestHandoffTakesANewRoomsFirstDeliveries(t *testing.T) {
	t.Parallel()
	f, o := newHandoffFixture(t)
	f.projectBatch(
		chattest.MessageCreated("room-new", "n-1", "first"),
		chattest.MessageCreated("room-new", "n-2", "second"),
		chattest.MessageCreated("room-new", "n-3", "third"),
	)
	f.waitEvents(3)
	f.waitSettled()
	f.wantSeqs("room-new", 3)
	if read := o.read.Load(); read != 0 {
		t.Errorf("read %d deliveries from the outbox, want none", read)
	}
}

// A room's earlier deliveries that the dispatcher has not read (committed by
// another process, which tells nobody here) go out before the ones handed
// over, in seq order: the handover of seq 4 does not follow a seq 3 seen
// here, so the dispatcher reads the outbox instead.
func TestHandoffWaitsForUnreadEarlierDeliveries(t *testing.T) {
	t.Parallel()
	f, o := newHandoffFixture(t)
	// "Another process": a projector that tells this dispatcher nothing.
	other := projections.NewProjector(f.db, nil, nil)
	for i := 1; i <= 3; i++ {
		e := chattest.MessageCreated("room-o", fmt.Sprintf("o-%d", i), "before")
		if _, err := projectOne(t.Context(), other, e.Envelope(t), noKafka); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond) // let a wrong dispatcher send nothing yet
	if n := len(f.srv.Events()); n != 0 {
		t.Fatalf("%d events sent before any handoff or wake", n)
	}
	f.projectBatch(
		chattest.MessageCreated("room-o", "o-4", "after"),
		chattest.MessageCreated("room-o", "o-5", "after"),
	)
	f.waitEvents(5)
	f.waitSettled()
	f.wantSeqs("room-o", 5)
	if read := o.read.Load(); read != 5 {
		t.Errorf("read %d deliveries from the outbox, want all 5", read)
	}
	// Now the room's chain is known: the next batch is not read back.
	f.projectBatch(chattest.MessageCreated("room-o", "o-6", "next"))
	f.waitEvents(6)
	f.waitSettled()
	if read := o.read.Load(); read != 5 {
		t.Errorf("read %d deliveries from the outbox after the chain was known, want still 5", read)
	}
}

// A batch handed over while sending is paused after a failed call is read
// from the outbox after the pause, fresh: a delete committed meanwhile has
// redacted it there, and Pusher never gets the deleted text. (Two things see
// to it: a pause refuses handoffs, and the failure that started it forgot
// every room's last seq along with what was queued. The test fails only
// without both, as checked.)
func TestHandoffDuringPauseIsReadFresh(t *testing.T) {
	t.Parallel()
	f := newIdleFixture(t)
	cfg := dispatcherConfig
	// A pause of at least 4 s (5 s ±20%), far longer than the two batches
	// projected during it take.
	cfg.MinBackoff, cfg.MaxBackoff = 5*time.Second, 5*time.Second
	f.useHandoff(cfg)
	f.start()
	f.srv.SetDown(true)
	f.projectBatch(chattest.MessageCreated("room-p", "p-1", "hello"))
	f.eventually("a refused call", func() bool {
		return slices.ContainsFunc(f.srv.Calls(), func(c fakepusher.Call) bool { return c.Status == 503 })
	})
	f.projectBatch(chattest.MessageCreated("room-p", "p-2", "secret text"))
	f.projectBatch(chattest.MessageDeleted("room-p", "p-2"))
	f.srv.SetDown(false)
	f.waitEvents(3)
	f.waitSettled()
	evs := f.srv.EventsOn("private-room-room-p")
	if len(evs) != 3 {
		t.Fatalf("got %d events, want 3", len(evs))
	}
	for i, e := range evs {
		if strings.Contains(e.Data, "secret") {
			t.Errorf("event #%d (%s) carries the deleted text: %s", i+1, e.Name, e.Data)
		}
	}
	f.wantSeqs("room-p", 3)
}

// wantSeqs fails the test unless the fake received exactly seqs 1..n on
// room's channel, in order.
func (f *fixture) wantSeqs(room string, n int) {
	f.t.Helper()
	if got, want := seqsOn(f.t, f.srv, room), seqRange(1, n); !slices.Equal(got, want) {
		f.t.Errorf("%s: seqs %v, want %v", room, got, want)
	}
}

func seqRange(from, to int) []int {
	var s []int
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

// Under a stream of batches over many rooms, each Pusher call returns its
// rooms' lanes at its own time; the dispatcher waits a moment (while other
// calls are in flight) for a call to fill up instead of sending the few
// events just freed. Calls then carry close to Pusher's 10 events.
func TestCallsFillUpUnderAStream(t *testing.T) {
	t.Parallel()
	f := newIdleFixture(t)
	f.useHandoff(dispatcherConfig)
	f.srv.SetLatency(20 * time.Millisecond)
	f.start()
	const rooms, rounds, perRound = 40, 30, 2
	for r := range rounds {
		var es []*chattest.Event
		for room := range rooms {
			for i := range perRound {
				es = append(es, chattest.MessageCreated(fmt.Sprintf("room-%d", room), fmt.Sprintf("m-%d-%d-%d", room, r, i), "hi"))
			}
		}
		f.projectBatch(es...)
		time.Sleep(5 * time.Millisecond)
	}
	f.waitEvents(rooms * rounds * perRound)
	f.waitSettled()
	calls := f.calls("batch_events")
	events := 0
	for _, c := range calls {
		events += c.Events
	}
	perCall := float64(events) / float64(len(calls))
	t.Logf("%d events in %d batch calls: %.1f per call", events, len(calls), perCall)
	if perCall < 9 {
		t.Errorf("%d events in %d batch calls: %.1f per call, want at least 9", events, len(calls), perCall)
	}
	for room := range rooms {
		f.wantSeqs(fmt.Sprintf("room-%d", room), rounds*perRound)
	}
}

// A dispatcher that holds all it may (Fetch) while the outbox has more reads
// on as soon as sending makes room, rather than at its next poll: one that
// fell behind its handoffs (or took over a backlog) otherwise caught up by
// one read of Fetch deliveries per poll interval. Here the poll is an hour
// away and nothing wakes the dispatcher after its first read.
func TestDispatcherReadsOnWhileTheOutboxHasMore(t *testing.T) {
	t.Parallel()
	f := newIdleFixture(t)
	cfg := dispatcherConfig
	cfg.PollInterval = time.Hour
	cfg.Fetch = 40
	o := f.useHandoff(cfg)
	// Committed by "another process", which tells this dispatcher nothing.
	other := projections.NewProjector(f.db, nil, nil)
	const rooms, perRoom = 5, 60
	var items []projections.Item
	for r := range rooms {
		for i := range perRoom {
			items = append(items, projections.Item{Env: chattest.MessageCreated(fmt.Sprintf("room-%d", r), fmt.Sprintf("m-%d-%d", r, i), "hi").Envelope(t), Origin: noKafka})
		}
	}
	if _, err := other.ProjectBatch(t.Context(), items); err != nil {
		t.Fatal(err)
	}
	f.start() // its first read finds 300 owed, 40 at a time
	f.waitEvents(rooms * perRoom)
	f.waitSettled()
	for r := range rooms {
		f.wantSeqs(fmt.Sprintf("room-%d", r), perRoom)
	}
	if n := int(o.reads.Load()); n < rooms*perRoom/cfg.Fetch {
		t.Errorf("%d reads of the outbox, want at least %d", n, rooms*perRoom/cfg.Fetch)
	}
}

// Handoffs may fill the queue up to twice Fetch: under a backlog the queue
// nears Fetch when a few rooms hold most of it, and a refused handoff sends
// its rooms' later deliveries to the outbox until they are read (some runs of
// BenchmarkIngest read half their deliveries back). Past that, memory stays
// bounded: what does not fit is read from the outbox instead.
func TestHandoffMayFillTwiceFetch(t *testing.T) {
	t.Parallel()
	f := newIdleFixture(t)
	cfg := dispatcherConfig
	cfg.PollInterval = time.Hour
	cfg.Fetch = 20
	o := f.useHandoff(cfg)
	f.start()
	f.eventually("the dispatcher's first read", func() bool { return o.reads.Load() > 0 })
	batch := func(room string, n int) {
		var es []*chattest.Event
		for i := range n {
			es = append(es, chattest.MessageCreated(room, fmt.Sprintf("%s-%d", room, i), "hi"))
		}
		f.projectBatch(es...)
	}
	batch("room-1", 30) // more than Fetch, within twice: taken as handed over
	f.waitEvents(30)
	f.waitSettled()
	if read := o.read.Load(); read != 0 {
		t.Errorf("read %d deliveries from the outbox after a handoff of 30 with Fetch 20, want none", read)
	}
	batch("room-2", 50) // more than twice Fetch: the 10 past it are read from the outbox
	f.waitEvents(80)
	f.waitSettled()
	if read := o.read.Load(); read != 10 {
		t.Errorf("read %d deliveries from the outbox after a handoff of 50 with Fetch 20, want the 10 past twice Fetch", read)
	}
	for room, n := range map[string]int{"room-1": 30, "room-2": 50} {
		f.wantSeqs(room, n)
	}
}
