package consumers

import (
	"context"
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
	Registerer  prometheus.Registerer
}

// Batcher projects the events handed to it concurrently (one per handler
// goroutine of the router) in shared transactions. While transactions are
// running, new events wait and form the next batch: at low load a batch is
// one event and adds no delay; under load batches grow to MaxBatch and one
// commit serves them all. Project returns once its event's transaction has
// committed, so a Kafka message is acknowledged only when its event is
// durable. Events of one room are never in two batches at once as long as
// the subscriber hands out a room's next event only after the previous one
// was acknowledged (both watermill-kafka's subscriber and KeyedSubscriber do).
type Batcher struct {
	projector BatchProjector
	cfg       BatcherConfig
	requests  chan batchRequest
	stopped   chan struct{} // closed when Run has returned
	metrics   *batcherMetrics
}

// errBatcherStopped answers events handed in after the batcher stopped; their
// messages are not acknowledged and come back.
var errBatcherStopped = fmt.Errorf("batcher stopped")

type batchRequest struct {
	item projections.Item
	ctx  context.Context
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
	return &Batcher{projector: p, cfg: cfg, requests: make(chan batchRequest, cfg.MaxBatch),
		stopped: make(chan struct{}), metrics: newBatcherMetrics(cfg.Registerer)}
}

// Project hands env to the next batch and waits until that batch has
// committed (or failed). Its error is the event's own rejection (see
// projections.Result) or the batch's transient failure.
func (b *Batcher) Project(ctx context.Context, env domain.Envelope, src projections.Source) (projections.Outcome, error) {
	req := batchRequest{item: projections.Item{Env: env, Src: src}, ctx: ctx, done: make(chan batchAnswer, 1)}
	select {
	case b.requests <- req:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-b.stopped:
		return 0, errBatcherStopped
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
func (b *Batcher) Run(ctx context.Context) error {
	defer close(b.stopped)
	slots := make(chan struct{}, b.cfg.Concurrency)
	for {
		var first batchRequest
		select {
		case first = <-b.requests:
		case <-ctx.Done():
			for range b.cfg.Concurrency {
				slots <- struct{}{} // wait for the batches in flight
			}
			return nil
		}
		slots <- struct{}{}
		batch := []batchRequest{first}
	fill:
		for len(batch) < b.cfg.MaxBatch {
			select {
			case r := <-b.requests:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		go func() {
			defer func() { <-slots }()
			b.project(batch)
		}()
	}
}

func (b *Batcher) project(batch []batchRequest) {
	// A waiter whose context ended before its batch started leaves it (its
	// message is not acknowledged and comes back).
	live := batch[:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- batchAnswer{err: err}
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	items := make([]projections.Item, len(live))
	for i, r := range live {
		items[i] = r.item
	}
	start := time.Now()
	results, err := b.projector.ProjectBatch(context.Background(), items)
	b.metrics.seconds.Observe(time.Since(start).Seconds())
	b.metrics.size.Observe(float64(len(items)))
	for i, r := range live {
		if err != nil {
			r.done <- batchAnswer{err: fmt.Errorf("batch of %d: %w", len(items), err)}
			continue
		}
		r.done <- batchAnswer{outcome: results[i].Outcome, err: results[i].Err}
	}
	if err == nil {
		b.metrics.events.Add(float64(len(items)))
	}
}

type batcherMetrics struct {
	size    prometheus.Histogram
	seconds prometheus.Histogram
	events  prometheus.Counter
}

func newBatcherMetrics(reg prometheus.Registerer) *batcherMetrics {
	m := &batcherMetrics{
		size: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "roomcast_projection_batch_events",
			Help:    "Events projected in one transaction.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000},
		}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "roomcast_projection_batch_seconds",
			Help:    "Time to project one batch (one transaction, commit included).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roomcast_projection_batched_events_total",
			Help: "Events committed by batch transactions (rate() gives events/s).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.size, m.seconds, m.events)
	}
	return m
}
