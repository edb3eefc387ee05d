package consumers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/projections"
)

// BatchProjector projects many events in one transaction.
type BatchProjector interface {
	ProjectBatch(ctx context.Context, items []projections.Item) ([]projections.Result, error)
}

// BatcherConfig tunes a Batcher; zero values take the defaults.
type BatcherConfig struct {
	// MaxBatch is the most events one transaction carries (default 1000;
	// 1 projects one event per transaction).
	MaxBatch int
	// Concurrency is how many transactions may run at once (default 2: one
	// commits while the next is built).
	Concurrency int
	// Timeout is the deadline of one batch's projection (PROJECTION_TIMEOUT,
	// default 30s): its transaction, or all the parts of a batch split
	// around an event Postgres refused. A batch over it fails transiently
	// and its events are retried, instead of holding them and their rooms'
	// later events (and a stop) for as long as a lock or a hung connection
	// lasts.
	Timeout    time.Duration
	Registerer prometheus.Registerer
}

// DefaultProjectionTimeout is BatcherConfig.Timeout's default.
const DefaultProjectionTimeout = 30 * time.Second

// Batcher projects the events handed to it concurrently (one per handler
// goroutine of the router) in shared transactions. While transactions are
// running, new events wait and form the next batch: at low load a batch is
// one event and adds no delay; under load batches grow to MaxBatch and one
// commit serves them all. Project returns once its event's transaction has
// committed, so a Kafka message is acknowledged only when its event is
// durable. A room's events keep their order: with one message of a key
// handed out at a time (watermill-kafka's subscriber, KeyedSubscriber by
// default) that is the subscriber's doing; with several (KeyedSubscriber's
// MaxInFlightPerKey), the batcher follows the turn each message carries (see
// Run).
type Batcher struct {
	projector BatchProjector
	cfg       BatcherConfig
	requests  chan *batchRequest
	stopped   chan struct{} // closed when Run has returned
	metrics   *batcherMetrics
}

// errBatcherStopped answers events handed in after the batcher stopped; their
// messages are not acknowledged and come back.
var errBatcherStopped = fmt.Errorf("batcher stopped")

type batchRequest struct {
	item projections.Item
	ctx  context.Context
	// gone is ctx.Done(), taken once: form looks at every waiting request
	// each time it runs (thousands of them under a backlog), too often to
	// go through the message's context chain each time.
	gone <-chan struct{}
	turn *turn // its message's place in its key's order, or nil
	done chan batchAnswer
}

type batchAnswer struct {
	outcome projections.Outcome
	err     error
}

// NewBatcher returns a Batcher over p; call Run to start it.
func NewBatcher(p BatchProjector, cfg BatcherConfig) *Batcher {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 1000
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 2
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultProjectionTimeout
	}
	return &Batcher{projector: p, cfg: cfg, requests: make(chan *batchRequest, cfg.MaxBatch),
		stopped: make(chan struct{}), metrics: newBatcherMetrics(cfg.Registerer)}
}

// Project hands env to the next batch and waits until that batch has
// committed (or failed). Its error is the event's own rejection (see
// projections.Result) or the batch's transient failure.
func (b *Batcher) Project(ctx context.Context, env domain.Envelope, src projections.Origin) (projections.Outcome, error) {
	req := &batchRequest{item: projections.Item{Env: env, Origin: src}, ctx: ctx, gone: ctx.Done(), turn: turnFrom(ctx), done: make(chan batchAnswer, 1)}
	// Hand it in without a three-way select when there is room (nearly
	// always). Once stopped, an event handed in still gets its answer below.
	select {
	case b.requests <- req:
	default:
		select {
		case b.requests <- req:
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-b.stopped:
			return 0, errBatcherStopped
		}
	}
	// Every request is answered: once its event is in a running batch, the
	// handler waits for the commit even if ctx ends meanwhile, so that a
	// committed event is acknowledged (a stop then re-projects nothing).
	select {
	case a := <-req.done:
		return a.outcome, a.err
	case <-b.stopped:
		// Run finished every batch it took before stopping: an answer may be waiting.
		select {
		case a := <-req.done:
			return a.outcome, a.err
		default:
			return 0, errBatcherStopped
		}
	}
}

// Run forms and projects batches until ctx ends; the batches running then
// are finished first.
//
// An event whose message carries a turn (KeyedSubscriber with
// MaxInFlightPerKey above 1) joins a batch only when every earlier message of
// its key is done or already in that batch, before it: a room's events are
// applied in order, several of them in one transaction, and never while an
// earlier one is in a transaction that may still fail. Those that must wait
// stay for a later batch.
func (b *Batcher) Run(ctx context.Context) error {
	defer close(b.stopped)
	l := &batchLoop{b: b, finished: make(chan struct{}, b.cfg.Concurrency)}
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for {
		l.startBatches()
		b.metrics.waiting.Set(float64(len(l.blocked) + len(l.fresh)))
		select {
		case r := <-b.requests:
			l.fresh = append(l.fresh, r)
		case <-l.finished:
			l.running--
			l.rescan = true
		case <-l.pollWhileBlocked(poll):
			l.rescan = true
		case <-ctx.Done():
			l.finishAndAnswerTheRest()
			return nil
		}
		l.takeHandedIn()
	}
}

// batchLoop is Run's state: the batches running and the events waiting.
type batchLoop struct {
	b        *Batcher
	finished chan struct{} // one send per batch finished
	running  int
	// blocked wait for an earlier event of their key that was neither done
	// nor in the batch when they were last looked at; only a finished batch
	// (or the poll) can release them, so only then are they looked at again.
	// fresh have not been looked at since they came (or did not fit).
	blocked, fresh []*batchRequest
	rescan         bool // look at blocked again
}

// startBatches forms batches and starts projecting them while a slot is
// free and something can go.
func (l *batchLoop) startBatches() {
	for l.running < l.b.cfg.Concurrency {
		cands := l.fresh
		if l.rescan {
			cands = append(l.blocked, l.fresh...)
			l.blocked, l.rescan = nil, false
		}
		batch, stillBlocked, rest := l.b.form(cands)
		l.blocked, l.fresh = append(l.blocked, stillBlocked...), rest
		if len(batch) == 0 {
			return
		}
		l.running++
		go func() {
			defer func() { l.finished <- struct{}{} }()
			l.b.project(batch)
		}()
	}
}

// pollWhileBlocked is poll's channel while events are blocked and a slot is
// free, else nil: events blocked by a turn another path settles (an ack
// after a dead letter) are looked at again on a short poll.
func (l *batchLoop) pollWhileBlocked(poll *time.Ticker) <-chan time.Time {
	if len(l.blocked) > 0 && l.running < l.b.cfg.Concurrency {
		return poll.C
	}
	return nil
}

// takeHandedIn takes every event already handed in (at most one per
// handler) without waiting.
func (l *batchLoop) takeHandedIn() {
	for {
		select {
		case r := <-l.b.requests:
			l.fresh = append(l.fresh, r)
		default:
			return
		}
	}
}

// finishAndAnswerTheRest waits for the batches in flight, which answer
// their events, and answers the events still waiting that the batcher
// stopped.
func (l *batchLoop) finishAndAnswerTheRest() {
	for ; l.running > 0; l.running-- {
		<-l.finished
	}
	for _, r := range append(l.blocked, l.fresh...) {
		r.done <- batchAnswer{err: errBatcherStopped}
	}
}

// form picks the next batch from cands, in an order that keeps every key's
// order. It returns the batch, the candidates blocked by an earlier event of
// their key, and the others that did not fit (both in the order they came).
func (b *Batcher) form(cands []*batchRequest) (batch, blocked, rest []*batchRequest) {
	if len(cands) == 0 {
		return nil, nil, nil
	}
	const (
		unseen = iota
		taken
		waits
	)
	state := make([]uint8, len(cands))
	in := map[*turn]bool{}
	// The candidates waiting for a turn not yet in the batch, in their
	// order: blockedOn holds the first and last of each turn's list, after
	// the index of the next (a linked list in one slice, rather than a
	// slice per turn allocated on every run).
	blockedOn := map[*turn][2]int{}
	after := make([]int, len(cands))
	var add func(i int)
	add = func(i int) {
		state[i] = taken
		r := cands[i]
		batch = append(batch, r)
		if r.turn == nil {
			return
		}
		in[r.turn] = true
		list, ok := blockedOn[r.turn]
		if !ok {
			return
		}
		delete(blockedOn, r.turn)
		for n := list[0]; ; n = after[n] {
			if len(batch) < b.cfg.MaxBatch {
				add(n)
			}
			if n == list[1] {
				break
			}
		}
	}
	for i, r := range cands {
		if len(batch) >= b.cfg.MaxBatch {
			break
		}
		select {
		case <-r.gone:
			// Its message was given up (rebalance, stop): it comes back.
			state[i] = taken
			r.done <- batchAnswer{err: r.ctx.Err()}
			continue
		default:
		}
		if p := r.turn.firstPending(); p == nil || in[p] {
			add(i)
		} else {
			state[i] = waits
			if list, ok := blockedOn[p]; ok {
				after[list[1]] = i
				blockedOn[p] = [2]int{list[0], i}
			} else {
				blockedOn[p] = [2]int{i, i}
			}
		}
	}
	for i, r := range cands {
		switch state[i] {
		case waits:
			blocked = append(blocked, r)
		case unseen:
			rest = append(rest, r)
		}
	}
	return batch, blocked, rest
}

// project projects batch in one transaction and answers each of its events.
func (b *Batcher) project(batch []*batchRequest) {
	items := make([]projections.Item, len(batch))
	for i, r := range batch {
		items[i] = r.item
	}
	results, err := b.projectWithin(items)
	b.answer(batch, results, err)
}

// projectWithin projects items within the projection timeout, and records
// the batch's size and time.
func (b *Batcher) projectWithin(items []projections.Item) ([]projections.Result, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.Timeout)
	results, err := b.projector.ProjectBatch(ctx, items)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("over the projection timeout of %v: %w", b.cfg.Timeout, err)
	}
	cancel()
	b.metrics.seconds.Observe(time.Since(start).Seconds())
	b.metrics.size.Observe(float64(len(items)))
	return results, err
}

// answer tells each event of batch its result, the batch's err if it
// failed, and lets the successors of those done go.
func (b *Batcher) answer(batch []*batchRequest, results []projections.Result, err error) {
	done := 0
	for i, r := range batch {
		if err != nil {
			r.done <- batchAnswer{err: fmt.Errorf("batch of %d: %w", len(batch), err)}
			continue
		}
		res := results[i]
		if res.Err != nil && !domain.IsPermanent(res.Err) {
			// Not committed: a batch split around an event Postgres refused
			// failed part-way. As the events of a failed batch, it is
			// retried and its successors keep waiting (this is always a
			// suffix of the batch: nothing after it committed).
			r.done <- batchAnswer{err: fmt.Errorf("batch of %d: %w", len(batch), res.Err)}
			continue
		}
		// Committed, or rejected for good: either way its successors may go.
		done++
		r.turn.markDone()
		r.done <- batchAnswer{outcome: res.Outcome, err: res.Err}
	}
	b.metrics.events.Add(float64(done))
}
