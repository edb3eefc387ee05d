package publishers

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/pusher/pusher-http-go/v5"

	"github.com/roomcast/roomcast/domain"
)

// Outbox is what the dispatcher needs from the store of owed deliveries.
// PendingExcept returns deliveries oldest first (each room's in seq order),
// leaving out those whose ids are in exclude and those of the rooms in
// skipRooms. PendingInRooms returns, for each rooms[i], up to limits[i] of
// its deliveries with ids above after[i], in id order.
type Outbox interface {
	PendingExcept(ctx context.Context, limit int, exclude []int64, skipRooms []string) ([]domain.Delivery, error)
	PendingInRooms(ctx context.Context, rooms []string, after []int64, limits []int) ([]domain.Delivery, error)
	MarkDelivered(ctx context.Context, ids []int64) error
	RecordFailure(ctx context.Context, ids []int64, reason string) error
	Park(ctx context.Context, id int64, reason string) error
}

// Leader is implemented by an outbox shared by several processes: only the
// process for which Lead returns true dispatches, so that no two send the
// same delivery or reorder a room.
type Leader interface {
	Lead(ctx context.Context) (bool, error)
	Release()
}

// Purger is implemented by an outbox that can delete what was delivered long ago.
type Purger interface {
	Purge(ctx context.Context, olderThan time.Duration, limit int) (int64, error)
}

// Pusher is the part of pusher-http-go's client the dispatcher calls.
type Pusher interface {
	TriggerBatch(batch []pusher.Event) (*pusher.TriggerBatchChannelsList, error)
	TriggerMultiWithParams(channels []string, event string, data interface{}, params pusher.TriggerParams) (*pusher.TriggerChannelsList, error)
}

// DispatcherConfig tunes a Dispatcher; zero values take the defaults.
type DispatcherConfig struct {
	// MaxInFlight bounds the Pusher calls in flight at once (default 64).
	MaxInFlight int
	// BatchEvents is the most events one batch call carries: 10 (default,
	// Pusher's limit) or fewer; 1 sends one call per event.
	BatchEvents int
	// Fetch is how many pending deliveries the dispatcher reads from the
	// outbox at most, and holds at most for sending (default 5000); handoffs
	// (see Handoff) may fill that up to twice as much.
	Fetch int
	// RoomHold is the most deliveries of one room held waiting (default
	// 200, 20 calls' worth); a room with more owed is read on its own as its
	// lane drains (see fairness.go), so that it cannot crowd out the others.
	RoomHold int
	// PollInterval is how often the outbox is read when nothing wakes the
	// dispatcher, and how often leadership is checked (default 1s).
	PollInterval time.Duration
	// MinBackoff and MaxBackoff bound the pause after a failed call (default 200ms and 30s).
	MinBackoff, MaxBackoff time.Duration
	// StallAfter is how long Pusher may fail every call, or refuse the
	// credentials, before the dispatcher reports a stall (default 2m; see
	// stall.go).
	StallAfter time.Duration
	// Retention is how long an outbox that keeps delivered rows (see
	// projections.Outbox.KeepDelivered) keeps them before they are purged.
	// 0 (the default) purges nothing: the outbox deletes what Pusher
	// accepted at once; negative keeps delivered rows forever.
	Retention  time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

func (c *DispatcherConfig) setDefaults() {
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 64
	}
	if c.BatchEvents <= 0 || c.BatchEvents > domain.MaxPusherBatchEvents {
		c.BatchEvents = domain.MaxPusherBatchEvents
	}
	if c.Fetch <= 0 {
		c.Fetch = 5000
	}
	if c.RoomHold <= 0 {
		c.RoomHold = 20 * c.BatchEvents
	}
	c.RoomHold = max(c.RoomHold, 2)
	if c.PollInterval <= 0 {
		c.PollInterval = time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = min(200*time.Millisecond, c.MaxBackoff)
	}
	c.MinBackoff = min(c.MinBackoff, c.MaxBackoff)
	if c.StallAfter <= 0 {
		c.StallAfter = 2 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Dispatcher delivers what the outbox owes to Pusher, as fast as Pusher's
// limits allow and without breaking a room's order:
//
//   - A room's deliveries form a lane, in seq order. A lane has at most one
//     call in flight, so a later event of a room is never sent while an
//     earlier one is pending or in flight; calls for different rooms run
//     concurrently, up to MaxInFlight.
//   - Single-channel deliveries are packed into batch calls of up to 10
//     events, across lanes; a delivery for many channels is one trigger.
//   - Deliveries are marked only once Pusher accepted them (batched into one
//     update per turn), so a crash re-sends at most the calls in flight and
//     the marks not yet written.
//   - 5xx, 429 and network errors put the call's deliveries back at the head
//     of their lanes and pause all sending with exponential backoff and
//     jitter; 401, 403 and 404 do the same and mark the dispatcher degraded;
//     a call Pusher rejects for its content (400, 413) is retried event by
//     event and the event it still rejects is parked with the reason.
type Dispatcher struct {
	outbox  Outbox
	pusher  Pusher
	cfg     DispatcherConfig
	log     *slog.Logger
	metrics *dispatcherMetrics
	wake    chan struct{}

	handoffs  chan []domain.Delivery // see Handoff
	accepting atomic.Bool            // a term is running: handoffs are read

	mu       sync.Mutex
	degraded error   // set by 401/403/404, cleared by the next accepted call
	failing  failing // see stall.go

	unmarked []acceptedDelivery // accepted, not marked when a term ended (Run's goroutine only)
	unparked []toPark           // rejected, not parked when a term ended (Run's goroutine only)
}

// NewDispatcher returns a Dispatcher reading outbox and calling p.
func NewDispatcher(outbox Outbox, p Pusher, cfg DispatcherConfig) *Dispatcher {
	cfg.setDefaults()
	d := &Dispatcher{
		outbox:  outbox,
		pusher:  p,
		cfg:     cfg,
		log:     cfg.Logger,
		metrics: newDispatcherMetrics(cfg.Registerer),
		wake:    make(chan struct{}, 1),

		handoffs: make(chan []domain.Delivery, handoffQueue),
	}
	d.registerStall(cfg.Registerer)
	return d
}

// handoffQueue is how many handed-over batches may wait for the dispatcher.
const handoffQueue = 64

// Handoff gives the dispatcher deliveries this process just committed to the
// outbox (ids set, each room's in seq order), so that it need not read back
// what was just written. It never blocks. It returns false when it did not
// take them (this process does not lead, or handoffQueue batches wait): the
// caller then wakes the dispatcher and the leader as for any commit (Wake).
//
// The dispatcher reads from the outbox whatever it took but cannot place in
// order: a room's delivery goes into its lane only right behind the one
// before it (seq - 1) seen in this term, read or handed over. Otherwise an
// earlier one of the room may still be unread in the outbox (committed by
// another process, or handed over when it could not be taken), and both are
// read from the outbox, in order. Deliveries handed over during a pause
// after a failed call are read again after it too, as every held one is.
func (d *Dispatcher) Handoff(ds []domain.Delivery) bool {
	if !d.accepting.Load() {
		return false
	}
	select {
	case d.handoffs <- ds:
		return true
	default:
		return false
	}
}

// Wake makes the dispatcher read the outbox now rather than at its next poll.
// It never blocks.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Degraded returns the reason Pusher refuses roomcast's credentials, or nil.
func (d *Dispatcher) Degraded() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.degraded
}

func (d *Dispatcher) setDegraded(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.degraded = err
}

// Run delivers until ctx ends. When ctx ends, the calls in flight are
// finished and settled and no new call starts; what is not delivered stays
// owed. Run returns nil on ctx's end.
func (d *Dispatcher) Run(ctx context.Context) error {
	leader, shared := d.outbox.(Leader)
	if !shared {
		d.lead(ctx, func() bool { return true })
		return nil
	}
	defer leader.Release()
	for ctx.Err() == nil {
		lead, err := leader.Lead(ctx)
		if err != nil && ctx.Err() == nil {
			d.log.Warn("dispatch lock", slog.Any("error", err))
		}
		if lead {
			d.lead(ctx, func() bool {
				still, err := leader.Lead(ctx)
				return err == nil && still
			})
			continue
		}
		if !sleep(ctx, d.cfg.PollInterval) {
			break
		}
	}
	return nil
}

// call is one Pusher API call: a batch of single-channel deliveries, or one
// delivery for many channels.
type call struct {
	ds       []domain.Delivery
	started  time.Time
	multi    bool
	isolated bool // a delivery sent alone after its batch was rejected
	lanes    []*lane
}

type callResult struct {
	call *call
	err  error
}

// lane holds one room's undelivered deliveries in seq order (or one
// notification's, which have no order).
type lane struct {
	key     string
	queue   []domain.Delivery
	busy    bool // a call with this lane's deliveries is in flight
	isolate int  // how many head deliveries must go alone (after a rejected batch)
	inReady bool
}

// pipeline is the state of one leadership term; only lead's goroutine touches it.
type pipeline struct {
	d           *Dispatcher
	lanes       map[string]*lane
	ready       []*lane
	multi       []domain.Delivery
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
}

// lead dispatches while stillLeading holds and ctx lasts.
func (d *Dispatcher) lead(ctx context.Context, stillLeading func() bool) {
	p := &pipeline{
		d: d, lanes: map[string]*lane{}, known: map[int64]struct{}{}, lastSeq: map[string]int64{}, behind: map[string]int64{},
		results: make(chan callResult, d.cfg.MaxInFlight), markDone: make(chan error, 1),
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
	var pause *time.Timer
	defer func() {
		if pause != nil {
			pause.Stop()
		}
	}()
	done := ctx.Done()
	stopping, fetchDue := false, true
	var lastPurge time.Time // a new leader purges at its first poll

	for {
		if ctx.Err() != nil {
			stopping = true
		}
		if !stopping {
			p.retryParks(settleCtx)
			// While probing a Pusher that failed (one call at a time), what
			// the probe carries is read once after each pause; more would
			// only be dropped again at its failure, and read again.
			probeHeld := p.probing && (p.queued > 0 || p.inflight > 0)
			if !time.Now().Before(p.pauseTill) && !probeHeld {
				p.refill(ctx)
			}
			if fetchDue && p.queued < d.cfg.Fetch/2 && !time.Now().Before(p.pauseTill) && !probeHeld {
				n, full, err := p.fetch(ctx)
				// A full read leaves more behind: read on as soon as sending
				// makes room, not at the next poll. Otherwise a dispatcher
				// that once fell behind its handoffs (every later one of a
				// room then waits to be read) caught up by one read of Fetch
				// per poll interval, and ended a backlog seconds late.
				fetchDue = err == nil && n > 0 && (full || p.queued < d.cfg.Fetch/2)
				if err != nil && ctx.Err() == nil {
					d.log.Warn("read the outbox", slog.Any("error", err))
				}
			}
			p.launch()
		}
		p.settle(settleCtx)
		if stopping && p.inflight == 0 {
			// The last marks, written before the term ends.
			if p.marking != nil {
				p.marked(<-p.markDone)
			}
			p.markRetry = time.Time{}
			if p.settle(settleCtx) {
				p.marked(<-p.markDone)
			}
			return
		}
		var pauseC <-chan time.Time // the end of a pause, or of a short call's wait
		var until time.Time
		if time.Now().Before(p.pauseTill) && p.queued > 0 {
			until = p.pauseTill
		}
		if !p.holdSince.IsZero() && !stopping {
			if end := p.holdSince.Add(holdFor); until.IsZero() || end.Before(until) {
				until = end
			}
		}
		if len(p.parking) > 0 && !stopping && (until.IsZero() || p.parkRetry.Before(until)) {
			until = p.parkRetry
		}
		if !until.IsZero() {
			wait := max(time.Until(until), 0)
			if pause == nil {
				pause = time.NewTimer(wait)
			} else {
				pause.Reset(wait)
			}
			pauseC = pause.C
		}
		handoffs := d.handoffs
		if stopping {
			// What they hold stays owed in the outbox; committers now wake
			// (and notify) whoever leads next instead.
			handoffs = nil
			d.accepting.Store(false)
		}
		select {
		case ds := <-handoffs:
			if !p.take(ds) {
				fetchDue = true
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
			fetchDue = true
		case <-pauseC:
		case <-poll.C:
			fetchDue = true
			d.metrics.held.Set(float64(len(p.known)))
			if !stopping && !stillLeading() {
				d.log.Warn("lost the dispatch lock: finishing calls in flight and handing over")
				stopping = true
			}
			if purger, ok := d.outbox.(Purger); ok && d.cfg.Retention > 0 && time.Since(lastPurge) > purgeEvery && !stopping {
				lastPurge = time.Now()
				// A full round means more is due: the next one comes at the
				// next poll rather than a minute later, so the purge keeps up
				// with up to purgeRound deliveries per poll interval (10,000
				// a second by default) instead of ~170 a second.
				n, err := purger.Purge(ctx, d.cfg.Retention, purgeRound)
				if err != nil {
					d.log.Warn("purge delivered rows", slog.Any("error", err))
				} else {
					d.metrics.purged.Add(float64(n))
				}
				if err == nil && n == purgeRound {
					lastPurge = time.Time{}
				}
			}
		case <-done:
			done = nil
			stopping = true
		}
	}
}

// purgeEvery and purgeRound pace the purge of delivered rows past their
// retention: a round of at most purgeRound rows every purgeEvery, and one
// every poll while rounds come back full.
const (
	purgeEvery = time.Minute
	purgeRound = 10000
)

// place queues a delivery in its lane (or with the multi-channel ones).
func (p *pipeline) place(del domain.Delivery) {
	p.known[del.ID] = struct{}{}
	p.queued++
	if len(del.Channels) > 1 {
		p.multi = append(p.multi, del)
		return
	}
	key := del.RoomID
	if key == "" {
		key = fmt.Sprintf("#%d", del.ID) // a notification: no order to keep
	}
	l := p.lanes[key]
	if l == nil {
		l = &lane{key: key}
		p.lanes[key] = l
	}
	l.queue = append(l.queue, del)
	p.makeReady(l)
}

func (p *pipeline) makeReady(l *lane) {
	if l.busy || l.inReady || len(l.queue) == 0 {
		if !l.busy && len(l.queue) == 0 {
			delete(p.lanes, l.key)
		}
		return
	}
	l.inReady = true
	p.ready = append(p.ready, l)
}

// launch starts calls while there is room in flight and sending is not paused.
//
// Deliveries sent and not yet marked (in flight, accepted, being marked) are
// what a crash sends twice; marks are written in the background, so they are
// capped at two turns of calls: past that, sending waits for the marks.
func (p *pipeline) launch() {
	unconfirmed := 2 * p.d.cfg.MaxInFlight * p.d.cfg.BatchEvents
	for p.inflight < p.d.cfg.MaxInFlight && !time.Now().Before(p.pauseTill) {
		if p.probing && p.inflight > 0 {
			return // one call at a time until Pusher accepts one again
		}
		if p.sending+len(p.accepted)+len(p.marking) >= unconfirmed {
			return // the marks are behind: the next one wakes the loop
		}
		n, asIs := p.nextCallSize()
		if n == 0 {
			p.holdSince = time.Time{}
			return
		}
		if !asIs && p.inflight >= holdInFlight {
			// Short of a full batch while calls are in flight: each of them
			// frees its lanes when it returns, and a call a moment later
			// carries theirs too rather than going out part empty (under a
			// backlog, calls carried ~8.6 events instead of 10).
			now := time.Now()
			if p.holdSince.IsZero() {
				p.holdSince = now
			}
			if now.Sub(p.holdSince) < holdFor {
				return
			}
		}
		p.holdSince = time.Time{}
		c := p.nextCall()
		if c == nil {
			return
		}
		p.inflight++
		p.sending += len(c.ds)
		c.started = time.Now()
		p.queued -= len(c.ds)
		p.d.metrics.inFlight.Inc()
		go func() {
			err := p.d.send(c)
			p.results <- callResult{call: c, err: err}
		}()
	}
}

// holdFor is the longest a call short of a full batch waits for more lanes
// to become ready, and holdInFlight how many calls must be in flight for it
// to wait at all (at low load calls go at once).
const (
	holdFor      = 3 * time.Millisecond
	holdInFlight = 4
)

// nextCallSize returns how many deliveries the next call would carry (up to
// a batch), and asIs when that call goes as it is, however short: a
// multi-channel trigger, or a call ending at a delivery that must go alone
// (after a rejected batch).
func (p *pipeline) nextCallSize() (n int, asIs bool) {
	if len(p.multi) > 0 {
		return 1, true
	}
	for _, l := range p.ready {
		if l.isolate > 0 {
			return max(n, 1), true
		}
		if n += len(l.queue); n >= p.d.cfg.BatchEvents {
			return p.d.cfg.BatchEvents, true
		}
	}
	return n, false
}

// nextCall packs the next call from the ready lanes, or returns nil.
func (p *pipeline) nextCall() *call {
	if len(p.multi) > 0 {
		del := p.multi[0]
		p.multi = p.multi[1:]
		return &call{ds: []domain.Delivery{del}, multi: true}
	}
	c := &call{}
	for len(c.ds) < p.d.cfg.BatchEvents && len(p.ready) > 0 {
		l := p.ready[0]
		if l.isolate > 0 {
			if len(c.ds) > 0 {
				break // it goes alone, in the next call
			}
			p.ready = p.ready[1:]
			l.inReady, l.busy = false, true
			c.ds, c.isolated, c.lanes = []domain.Delivery{l.queue[0]}, true, []*lane{l}
			l.queue = l.queue[1:]
			return c
		}
		p.ready = p.ready[1:]
		l.inReady, l.busy = false, true
		n := min(len(l.queue), p.d.cfg.BatchEvents-len(c.ds))
		c.ds = append(c.ds, l.queue[:n]...)
		l.queue = l.queue[n:]
		c.lanes = append(c.lanes, l)
	}
	if len(c.ds) == 0 {
		return nil
	}
	return c
}

// send makes one Pusher call.
func (d *Dispatcher) send(c *call) error {
	start := time.Now()
	var err error
	endpoint := "batch_events"
	if c.multi {
		endpoint = "events"
		del := c.ds[0]
		var params pusher.TriggerParams
		if del.SocketID != "" {
			socketID := del.SocketID
			params.SocketID = &socketID
		}
		_, err = d.pusher.TriggerMultiWithParams(del.Channels, del.Name, del.Data, params)
	} else {
		events := make([]pusher.Event, len(c.ds))
		for i, del := range c.ds {
			events[i] = pusher.Event{Channel: del.Channels[0], Name: del.Name, Data: del.Data}
			if del.SocketID != "" {
				socketID := del.SocketID
				events[i].SocketID = &socketID
			}
		}
		_, err = d.pusher.TriggerBatch(events)
	}
	d.metrics.callSeconds.WithLabelValues(endpoint).Observe(time.Since(start).Seconds())
	status := "200"
	if err != nil {
		_, status = classify(err)
	}
	d.metrics.calls.WithLabelValues(endpoint, status).Inc()
	return err
}

// handle settles one finished call in memory (and parks or records failures).
func (p *pipeline) handle(ctx context.Context, res callResult) {
	d, c := p.d, res.call
	p.inflight--
	p.sending -= len(c.ds)
	d.metrics.inFlight.Dec()
	defer func() {
		for _, l := range c.lanes {
			l.busy = false
			p.makeReady(l)
		}
	}()
	if res.err == nil {
		p.backoff, p.probing = 0, false
		d.callAccepted()
		d.metrics.batchSize.Observe(float64(len(c.ds)))
		if c.isolated {
			c.lanes[0].isolate--
		}
		for _, del := range c.ds {
			p.accepted = append(p.accepted, acceptedDelivery{id: del.ID, createdAt: del.CreatedAt})
		}
		return
	}
	kind, status := classify(res.err)
	reason := fmt.Sprintf("pusher answered %s: %s", status, redact(res.err))
	if kind == rejected && c.multi || kind == rejected && len(c.ds) == 1 {
		del := c.ds[0]
		if c.isolated {
			c.lanes[0].isolate--
		}
		d.metrics.parked.WithLabelValues(status).Inc()
		d.log.Error("Pusher rejects a delivery: parked", slog.Int64("delivery_id", del.ID), slog.String("event_id", del.EventID),
			slog.String("room_id", del.RoomID), slog.String("event", del.Name), slog.String("reason", reason))
		p.park(ctx, del.ID, reason) // see park.go
		return
	}
	if kind == rejected {
		p.requeue(c)
		// Pusher answers for the whole call: send its events one by one to
		// find the one it rejects.
		for _, l := range c.lanes {
			l.isolate = 0
			for _, del := range c.ds {
				if laneKey(del) == l.key {
					l.isolate++
				}
			}
		}
		return
	}
	d.callFailed(status, time.Now())
	if kind == unauthorized {
		d.setDegraded(fmt.Errorf("pusher refuses roomcast's credentials or app (status %s): check PUSHER_APP_ID, PUSHER_KEY, PUSHER_SECRET and the app's state", status))
		d.log.Error("Pusher refuses roomcast's credentials: deliveries kept, readiness degraded", slog.String("status", status), slog.String("error", redact(res.err)))
	} else {
		d.log.Warn("Pusher call failed: deliveries kept for retry", slog.String("status", status), slog.Int("events", len(c.ds)), slog.String("error", redact(res.err)))
	}
	// Forget the call and everything queued: after the pause they are read
	// again from the outbox, in order and fresh (a delete during the outage
	// has redacted their text there).
	for _, del := range c.ds {
		delete(p.known, del.ID)
	}
	p.dropQueued()
	p.probing = true
	if c.started.After(p.pausedAt) { // not a call of a round already paused for
		p.backoff = nextBackoff(p.backoff, d.cfg.MinBackoff, d.cfg.MaxBackoff)
		p.pausedAt = time.Now()
		p.pauseTill = p.pausedAt.Add(p.backoff)
	}
	ids := make([]int64, len(c.ds))
	for i, del := range c.ds {
		ids[i] = del.ID
	}
	if err := d.outbox.RecordFailure(ctx, ids, reason); err != nil {
		d.log.Warn("record delivery failure", slog.Any("error", err))
	}
}

// requeue puts a call's deliveries back at the head of their lanes, in order.
func (p *pipeline) requeue(c *call) {
	p.queued += len(c.ds)
	if c.multi {
		p.multi = append(c.ds, p.multi...)
		return
	}
	for _, l := range c.lanes {
		var mine []domain.Delivery
		for _, del := range c.ds {
			if laneKey(del) == l.key {
				mine = append(mine, del)
			}
		}
		l.queue = append(mine, l.queue...)
		if p.lanes[l.key] == nil {
			p.lanes[l.key] = l
		}
	}
}

// dropQueued forgets every delivery waiting in memory (not those in flight).
// Lanes with a call in flight stay, so that what is read again for their
// room waits behind that call.
func (p *pipeline) dropQueued() {
	for key, l := range p.lanes {
		for _, del := range l.queue {
			delete(p.known, del.ID)
		}
		l.queue, l.inReady = nil, false
		if !l.busy {
			delete(p.lanes, key)
		}
	}
	for _, del := range p.multi {
		delete(p.known, del.ID)
	}
	p.ready, p.multi, p.queued = nil, nil, 0
	clear(p.lastSeq) // what was dropped is unread again
	clear(p.behind)  // and so is everything after it
}

func laneKey(del domain.Delivery) string {
	if del.RoomID != "" {
		return del.RoomID
	}
	return fmt.Sprintf("#%d", del.ID)
}

// settle starts marking what Pusher accepted, in one update, unless an
// update is already running (what is accepted meanwhile waits for the next
// one, so marks coalesce under load and never hold up sending). It reports
// whether it started one; the outcome arrives on markDone. When Postgres is
// away the deliveries stay held (never re-fetched, never re-sent) and are
// marked later.
func (p *pipeline) settle(ctx context.Context) bool {
	if p.marking != nil || len(p.accepted) == 0 || time.Now().Before(p.markRetry) {
		return false
	}
	p.marking, p.accepted = p.accepted, nil
	ids := make([]int64, len(p.marking))
	for i, a := range p.marking {
		ids[i] = a.id
	}
	go func() {
		mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		p.markDone <- p.d.outbox.MarkDelivered(mctx, ids)
	}()
	return true
}

// acceptedDelivery is what marking a delivery Pusher accepted needs of it (a
// Delivery, payload included, is ~10 times the size).
type acceptedDelivery struct {
	id        int64
	createdAt time.Time
}

// marked settles the outcome of the update settle started.
func (p *pipeline) marked(err error) {
	ds := p.marking
	p.marking = nil
	if err != nil {
		p.markRetry = time.Now().Add(time.Second)
		p.accepted = append(ds, p.accepted...)
		p.d.log.Warn("mark deliveries delivered: will retry", slog.Int("deliveries", len(ds)), slog.Any("error", err))
		return
	}
	now := time.Now()
	for _, a := range ds {
		delete(p.known, a.id)
		if !a.createdAt.IsZero() {
			p.d.metrics.latency.Observe(now.Sub(a.createdAt).Seconds())
		}
	}
	p.d.metrics.delivered.Add(float64(len(ds)))
}

// nextBackoff doubles the previous pause within [lo, hi], with ±20% jitter.
func nextBackoff(prev, lo, hi time.Duration) time.Duration {
	next := min(max(prev*2, lo), hi)
	jitter := time.Duration(float64(next) * (rand.Float64()*0.4 - 0.2))
	return next + jitter
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
