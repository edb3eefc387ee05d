package publishers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
)

// A hot room's backlog does not hold up the other rooms. A room drains at
// one call in flight, ~10 events per round trip, so 10,000 owed deliveries of
// one room take a thousand round trips; meanwhile the other rooms' deliveries
// must go out with the next calls, in their own order. Measured here as
// progress, not time: while a cold room's delivery waits (from its commit
// until Pusher has it), the hot room may get at most a few calls through.
// Before each room's lane had a bound, the hot room filled the dispatcher's
// queue (twice Fetch) and every other room's handoffs were refused and read
// back from the outbox only once the queue had drained to half of Fetch: a
// cold delivery waited while ~1,500 of the hot room's went out (with the
// Fetch of 1,000 used here; ~7,500 with the default).
func TestHotRoomDoesNotHoldUpOtherRooms(t *testing.T) {
	t.Parallel()
	f := newIdleFixture(t)
	cfg := dispatcherConfig
	cfg.Fetch = 1000 // the queue's bound (twice Fetch) is reached within the first 2,000 hot events
	f.useHandoff(cfg)
	f.srv.SetLatency(5 * time.Millisecond)

	const (
		hotRoom   = "room-hot"
		hotEvents = 10000
		headStart = 5000 // hot events projected before the other rooms speak
		coldRooms = 20
		rounds    = 20
		perRound  = (hotEvents - headStart) / rounds
		// At most this many hot events may reach Pusher while a cold one
		// waits: the hot room's call in flight when the cold one is
		// committed, and the few that return while the cold call is in
		// flight, ten times over for a loaded machine.
		maxHotDuringWait = 100
	)
	// The cold rooms spoke before this dispatcher's term began (a restart, a
	// new leader): it knows nothing of their order, so their first handoffs
	// cannot be placed and are read from the outbox.
	var before []*chattest.Event
	for c := range coldRooms {
		before = append(before, chattest.MessageCreated(fmt.Sprintf("room-cold-%d", c), fmt.Sprintf("cold-%d-0", c), "earlier"))
	}
	f.projectBatch(before...)
	if err := f.db.Exec(`UPDATE deliveries SET delivered_at = now()`).Error; err != nil {
		t.Fatal(err)
	}
	f.start()

	hotChannel := domain.RoomChannel(hotRoom)
	hot := 0
	nextHot := func(n int) []*chattest.Event {
		var es []*chattest.Event
		for ; n > 0 && hot < hotEvents; n-- {
			hot++
			es = append(es, chattest.MessageCreated(hotRoom, fmt.Sprintf("hot-%d", hot), "busy"))
		}
		return es
	}
	for hot < headStart {
		f.projectBatch(nextHot(100)...)
	}

	// Rounds of one batch each, as the batcher forms them: the hot room's
	// next events and one event of every cold room. Right after each
	// commit, how many hot events Pusher has.
	type pending struct{ hotDelivered, hotOwed int }
	committed := map[string]pending{} // cold message id -> at its commit
	for r := 1; r <= rounds; r++ {
		es := nextHot(perRound)
		var cold []string
		for c := range coldRooms {
			id := fmt.Sprintf("cold-%d-%d", c, r)
			cold = append(cold, id)
			es = append(es, chattest.MessageCreated(fmt.Sprintf("room-cold-%d", c), id, "hello"))
		}
		f.projectBatch(es...)
		delivered := len(f.srv.EventsOn(hotChannel))
		for _, id := range cold {
			committed[id] = pending{hotDelivered: delivered, hotOwed: hot - delivered}
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Every cold event reaches Pusher (the hot room may still be draining).
	f.eventually("every cold room's events at Pusher", func() bool {
		return len(f.srv.Events())-len(f.srv.EventsOn(hotChannel)) >= coldRooms*rounds
	})
	worst, worstID, owedAtWorst, withBacklog := 0, "", 0, 0
	hotSoFar := 0
	for _, e := range f.srv.Events() {
		if e.Channel == hotChannel {
			hotSoFar++
			continue
		}
		var p struct{ ID string }
		if err := json.Unmarshal([]byte(e.Data), &p); err != nil {
			t.Fatalf("%s: %v", e.Data, err)
		}
		at, ok := committed[p.ID]
		if !ok {
			t.Fatalf("Pusher got %q, which was not projected", p.ID)
		}
		if at.hotOwed >= 1000 {
			withBacklog++
		}
		if during := hotSoFar - at.hotDelivered; during > worst {
			worst, worstID, owedAtWorst = during, p.ID, at.hotOwed
		}
	}
	t.Logf("%d of %d cold events were committed while the hot room owed 1,000 or more; at most %d hot events reached Pusher while one waited (%s, committed with %d hot owed)",
		withBacklog, coldRooms*rounds, worst, worstID, owedAtWorst)
	if withBacklog == 0 {
		t.Fatalf("the hot room never owed 1,000 deliveries while cold rooms were committed: the test shows nothing")
	}
	if worst > maxHotDuringWait {
		t.Errorf("%d hot events reached Pusher while cold event %s waited (committed with %d hot owed), want at most %d: the hot room holds up the others",
			worst, worstID, owedAtWorst, maxHotDuringWait)
	}

	// The hot room drains in order too, and nothing is left.
	ctx, cancel := context.WithTimeout(t.Context(), 4*waitLimit)
	defer cancel()
	if err := f.srv.WaitForEvents(ctx, hotEvents+coldRooms*rounds); err != nil {
		t.Fatalf("%v (backlog %+v)", err, f.backlog())
	}
	f.waitSettled()
	f.wantSeqs(hotRoom, hotEvents)
	for c := range coldRooms {
		room := fmt.Sprintf("room-cold-%d", c)
		if got, want := seqsOn(t, f.srv, room), seqRange(2, rounds+1); !slices.Equal(got, want) {
			t.Errorf("%s: seqs %v, want %v", room, got, want)
		}
	}
}

// A room left behind (more owed than its lane holds) is read on its own as
// its lane drains, in order; once a read finds nothing more, the room is
// back to taking handoffs, not read back.
func TestRoomBehindCatchesUpThenTakesHandoffs(t *testing.T) {
	t.Parallel()
	f := newIdleFixture(t)
	cfg := dispatcherConfig
	cfg.PollInterval = time.Hour // reads come from handoffs refused and the lanes' refills only
	cfg.RoomHold = 20
	o := f.useHandoff(cfg)
	f.start()
	f.eventually("the dispatcher's first read", func() bool { return o.reads.Load() > 0 })
	batch := func(from, n int) {
		var es []*chattest.Event
		for i := from; i < from+n; i++ {
			es = append(es, chattest.MessageCreated("room-b", fmt.Sprintf("b-%d", i), "hi"))
		}
		f.projectBatch(es...)
	}
	batch(1, 100) // 20 taken, 80 left in the outbox
	f.waitEvents(100)
	f.waitSettled()
	if read := o.read.Load(); read != 80 {
		t.Errorf("read %d deliveries of a handoff of 100 with RoomHold 20, want the 80 past the lane's hold", read)
	}
	batch(101, 5)
	f.waitEvents(105)
	f.waitSettled()
	if read := o.read.Load(); read != 80 {
		t.Errorf("read %d deliveries after the room caught up, want still 80 (the next handoff is taken)", read)
	}
	f.wantSeqs("room-b", 105)
}
