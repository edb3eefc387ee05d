package publishers

import (
	"context"
	"log/slog"
	"time"

	"github.com/roomcast/roomcast/domain"
)

// pipeline is the state of one leadership term; only lead's goroutine touches it.
type pipeline struct {
	d           *Dispatcher
	lanes       map[string]*lane
	ready       []*lane
	solo        []domain.Delivery  // deliveries that go in a call of their own (see place)
	known       map[int64]struct{} // held: queued, in flight or accepted and not yet marked
	lastSeq     map[string]int64   // per room, the highest seq held or settled in this term (see take)
	behind      map[string]int64   // rooms read on their own: the id of the last delivery held (see fairness.go)
	queued      int
	inflight    int
	sending     int // deliveries in the calls in flight
	results     chan callResult
	accepted    []acceptedDelivery // accepted by Pusher, to mark
	marking     []acceptedDelivery // being marked now (one update at a time)
	markDone    chan error
	pauseTill   time.Time
	pausedAt    time.Time
	holdSince   time.Time // a call short of a full batch waits since (see launch)
	refillRetry time.Time // a read of the rooms behind failed: the next one waits until then
	parking     []toPark  // rejected, parking failed: parked later (see park.go)
	parkRetry   time.Time
	parkBackoff time.Duration
	probing     bool
	backoff     time.Duration
	markRetry   time.Time

	// The loop's own state (see lead).
	stopping  bool            // the term ends: no new call starts, what is in flight is settled
	fetchDue  bool            // the outbox is to be read
	done      <-chan struct{} // ctx.Done(), nil once seen
	pause     *time.Timer     // see pauseTimer
	lastPurge time.Time       // a new leader purges at its first poll
}

// lead dispatches while stillLeading holds and ctx lasts.
func (d *Dispatcher) lead(ctx context.Context, stillLeading func() bool) {
	p := &pipeline{
		d: d, lanes: map[string]*lane{}, known: map[int64]struct{}{}, lastSeq: map[string]int64{}, behind: map[string]int64{},
		results: make(chan callResult, d.cfg.MaxInFlight), markDone: make(chan error, 1),
		fetchDue: true, done: ctx.Done(),
	}
	// Handoffs left from an earlier term are stale (another leader may have
	// delivered them since); the first read of the outbox gets what is owed.
	for drained := false; !drained; {
		select {
		case <-d.handoffs:
		default:
			drained = true
		}
	}
	d.accepting.Store(true)
	defer d.accepting.Store(false)
	defer d.notFailing() // the next leader reports for itself
	p.accepted, d.unmarked = d.unmarked, nil
	for _, a := range p.accepted {
		p.known[a.id] = struct{}{}
	}
	defer func() { d.unmarked = p.accepted }()
	p.parking, d.unparked = d.unparked, nil
	for _, a := range p.parking {
		p.known[a.id] = struct{}{}
	}
	if len(p.parking) > 0 {
		p.parkRetry = time.Now()
	}
	defer func() { d.unparked = p.parking }()
	settleCtx := context.WithoutCancel(ctx)
	poll := time.NewTicker(d.cfg.PollInterval)
	defer poll.Stop()
	defer func() {
		if p.pause != nil {
			p.pause.Stop()
		}
	}()

	for {
		if ctx.Err() != nil {
			p.stopping = true
		}
		if !p.stopping {
			p.advance(ctx, settleCtx)
		}
		p.settle(settleCtx)
		if p.stopping && p.inflight == 0 {
			p.finish(settleCtx)
			return
		}
		p.wait(ctx, settleCtx, poll.C, stillLeading)
	}
}

// advance retries what waits to be parked, reads what is owed (the rooms
// behind, then the outbox) and starts the calls there is room for.
func (p *pipeline) advance(ctx, settleCtx context.Context) {
	p.retryParks(settleCtx)
	// While probing a Pusher that failed (one call at a time), what the
	// probe carries is read once after each pause; more would only be
	// dropped again at its failure, and read again.
	probeHeld := p.probing && (p.queued > 0 || p.inflight > 0)
	if !time.Now().Before(p.pauseTill) && !probeHeld {
		p.refill(ctx)
	}
	if p.fetchDue && p.queued < p.d.cfg.Fetch/2 && !time.Now().Before(p.pauseTill) && !probeHeld {
		n, full, err := p.fetch(ctx)
		// A full read leaves more behind: read on as soon as sending makes
		// room, not at the next poll. Otherwise a dispatcher that once fell
		// behind its handoffs (every later one of a room then waits to be
		// read) caught up by one read of Fetch per poll interval, and ended
		// a backlog seconds late.
		p.fetchDue = err == nil && n > 0 && (full || p.queued < p.d.cfg.Fetch/2)
		if err != nil && ctx.Err() == nil {
			p.d.log.Warn("read the outbox", slog.Any("error", err))
		}
	}
	p.launch()
}

// finish writes the last marks, before the term ends.
func (p *pipeline) finish(settleCtx context.Context) {
	if p.marking != nil {
		p.marked(<-p.markDone)
	}
	p.markRetry = time.Time{}
	if p.settle(settleCtx) {
		p.marked(<-p.markDone)
	}
}

// wait blocks until the next thing to act on (a handoff, a finished call,
// a written mark, a wake, the end of a pause, a poll, the end of ctx) and
// acts on it.
func (p *pipeline) wait(ctx, settleCtx context.Context, poll <-chan time.Time, stillLeading func() bool) {
	d := p.d
	pauseC := p.pauseTimer()
	handoffs := d.handoffs
	if p.stopping {
		// What they hold stays owed in the outbox; committers now wake (and
		// notify) whoever leads next instead.
		handoffs = nil
		d.accepting.Store(false)
	}
	select {
	case ds := <-handoffs:
		if !p.take(ds) {
			p.fetchDue = true
		}
	case res := <-p.results:
		p.handle(settleCtx, res)
		for drained := false; !drained; {
			select {
			case res := <-p.results:
				p.handle(settleCtx, res)
			default:
				drained = true
			}
		}
	case err := <-p.markDone:
		p.marked(err)
	case <-d.wake:
		p.fetchDue = true
	case <-pauseC:
	case <-poll:
		p.polled(ctx, stillLeading)
	case <-p.done:
		p.done = nil
		p.stopping = true
	}
}

// pauseTimer returns a channel that fires at the end of a pause, of a short
// call's wait (see launch) or of the wait before parking again, whichever
// comes first; nil when there is none.
func (p *pipeline) pauseTimer() <-chan time.Time {
	var until time.Time
	if time.Now().Before(p.pauseTill) && p.queued > 0 {
		until = p.pauseTill
	}
	if !p.holdSince.IsZero() && !p.stopping {
		if end := p.holdSince.Add(holdFor); until.IsZero() || end.Before(until) {
			until = end
		}
	}
	if len(p.parking) > 0 && !p.stopping && (until.IsZero() || p.parkRetry.Before(until)) {
		until = p.parkRetry
	}
	if until.IsZero() {
		return nil
	}
	wait := max(time.Until(until), 0)
	if p.pause == nil {
		p.pause = time.NewTimer(wait)
	} else {
		p.pause.Reset(wait)
	}
	return p.pause.C
}

// polled is the poll's turn: the outbox is read, the held deliveries are
// counted, leadership is checked and delivered rows past their retention
// are purged.
func (p *pipeline) polled(ctx context.Context, stillLeading func() bool) {
	d := p.d
	p.fetchDue = true
	d.metrics.held.Set(float64(len(p.known)))
	if !p.stopping && !stillLeading() {
		d.log.Warn("lost the dispatch lock: finishing calls in flight and handing over")
		p.stopping = true
	}
	if purger, ok := d.outbox.(Purger); ok && d.cfg.Retention > 0 && time.Since(p.lastPurge) > purgeEvery && !p.stopping {
		p.purge(ctx, purger)
	}
}

// purge deletes a round of delivered rows past their retention.
func (p *pipeline) purge(ctx context.Context, purger Purger) {
	d := p.d
	p.lastPurge = time.Now()
	// A full round means more is due: the next one comes at the next poll
	// rather than a minute later, so the purge keeps up with up to
	// purgeRound deliveries per poll interval (10,000 a second by default)
	// instead of ~170 a second.
	n, err := purger.Purge(ctx, d.cfg.Retention, purgeRound)
	if err != nil {
		d.log.Warn("purge delivered rows", slog.Any("error", err))
	} else {
		d.metrics.purged.Add(float64(n))
	}
	if err == nil && n == purgeRound {
		p.lastPurge = time.Time{}
	}
}

// purgeEvery and purgeRound pace the purge of delivered rows past their
// retention: a round of at most purgeRound rows every purgeEvery, and one
// every poll while rounds come back full.
const (
	purgeEvery = time.Minute
	purgeRound = 10000
)
