package worker

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/roomcast/roomcast/projections"
)

// backlogGauges exports the outbox's backlog (roomcast_deliveries_pending,
// _oldest_pending_seconds, _parked). The outbox is read in the background,
// every backlogInterval and whenever a scrape asks, one read at a time, each
// statement with its own deadline (backlogTimeout, generous: counting a huge
// backlog takes a while). A scrape waits for a read that starts after it
// asked for at most backlogScrapeWait, and otherwise reports the last values
// read. A read that fails keeps the last values (the oldest delivery's age
// goes on growing from its commit time) and is counted; how old the values
// are is exported too. Before, every scrape read the outbox with a 2 s
// deadline and reported 0 on any error: exactly when the outbox was too big
// to count in time, or locked, the gauges said nothing was owed.
type backlogGauges struct {
	outbox    backlogReader
	log       *slog.Logger
	interval  time.Duration
	timeout   time.Duration
	wait      time.Duration
	asked     chan struct{} // a scrape asks for a read (coalesced)
	started   time.Time
	failures  prometheus.Counter
	pending   *prometheus.Desc
	oldestAge *prometheus.Desc
	parked    *prometheus.Desc
	age       *prometheus.Desc

	mu      sync.Mutex
	next    chan struct{} // closed when the next read to start ends
	b       projections.Backlog
	readAt  time.Time // when a read last succeeded whole; zero before the first
	failing bool      // the last read failed (logged once per run of failures)
}

// backlogReader is what the gauges read; *projections.Outbox implements it.
type backlogReader interface {
	OldestPending(ctx context.Context) (time.Time, int64, error)
	PendingCount(ctx context.Context) (int64, error)
}

const (
	backlogInterval   = 10 * time.Second
	backlogTimeout    = 30 * time.Second
	backlogScrapeWait = time.Second
)

func newBacklogGauges(outbox backlogReader, log *slog.Logger) *backlogGauges {
	return &backlogGauges{
		outbox: outbox, log: log,
		interval: backlogInterval, timeout: backlogTimeout, wait: backlogScrapeWait,
		asked: make(chan struct{}, 1), next: make(chan struct{}), started: time.Now(),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roomcast_deliveries_backlog_read_failures_total",
			Help: "Reads of the outbox's backlog that failed or timed out (the backlog gauges then keep their last values).",
		}),
		pending: prometheus.NewDesc("roomcast_deliveries_pending",
			"Deliveries owed to Pusher and not yet accepted.", nil, nil),
		oldestAge: prometheus.NewDesc("roomcast_deliveries_oldest_pending_seconds",
			"Age of the oldest delivery owed to Pusher (0 when none is pending).", nil, nil),
		parked: prometheus.NewDesc("roomcast_deliveries_parked",
			"Deliveries parked because Pusher rejects them (see deliveries.parked_reason).", nil, nil),
		age: prometheus.NewDesc("roomcast_deliveries_backlog_age_seconds",
			"Seconds since the backlog gauges were last read from the outbox (since the start until the first read).", nil, nil),
	}
}

// registerBacklog exports the outbox's backlog on reg; the returned gauges
// read it while their run lasts.
func registerBacklog(reg prometheus.Registerer, outbox backlogReader, log *slog.Logger) *backlogGauges {
	g := newBacklogGauges(outbox, log)
	reg.MustRegister(g, g.failures)
	return g
}

// run reads the outbox every interval and when a scrape asks, until ctx ends.
func (g *backlogGauges) run(ctx context.Context) {
	tick := time.NewTicker(g.interval)
	defer tick.Stop()
	for {
		g.read(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-g.asked:
		}
	}
}

// read reads the backlog once.
func (g *backlogGauges) read(ctx context.Context) {
	g.mu.Lock()
	done := g.next
	g.next = make(chan struct{})
	g.mu.Unlock()
	defer close(done)

	rctx, cancel := context.WithTimeout(ctx, g.timeout)
	oldest, parked, err := g.outbox.OldestPending(rctx)
	cancel()
	g.mu.Lock()
	if err == nil {
		g.b.Oldest, g.b.Parked = oldest, parked
	}
	g.mu.Unlock()
	var pending int64
	if err == nil {
		rctx, cancel := context.WithTimeout(ctx, g.timeout)
		pending, err = g.outbox.PendingCount(rctx)
		cancel()
	}
	if ctx.Err() != nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		g.failures.Inc()
		if !g.failing {
			g.log.Warn("read the outbox's backlog: the gauges keep their last values", slog.Any("error", err))
		}
		g.failing = true
		return
	}
	if g.failing {
		g.log.Info("read the outbox's backlog again")
	}
	g.b.Pending, g.readAt, g.failing = pending, time.Now(), false
}

// Describe implements prometheus.Collector.
func (g *backlogGauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- g.pending
	ch <- g.oldestAge
	ch <- g.parked
	ch <- g.age
}

// Collect implements prometheus.Collector: it asks for a read and waits for
// one that starts after that, up to g.wait, then reports the last values.
func (g *backlogGauges) Collect(ch chan<- prometheus.Metric) {
	g.mu.Lock()
	next := g.next
	g.mu.Unlock()
	select {
	case g.asked <- struct{}{}:
	default:
	}
	t := time.NewTimer(g.wait)
	select {
	case <-next:
	case <-t.C:
	}
	t.Stop()

	g.mu.Lock()
	b, readAt := g.b, g.readAt
	g.mu.Unlock()
	now := time.Now()
	oldest := 0.0
	if !b.Oldest.IsZero() {
		oldest = max(now.Sub(b.Oldest).Seconds(), 0)
	}
	if readAt.IsZero() {
		readAt = g.started
	}
	ch <- prometheus.MustNewConstMetric(g.pending, prometheus.GaugeValue, float64(b.Pending))
	ch <- prometheus.MustNewConstMetric(g.oldestAge, prometheus.GaugeValue, oldest)
	ch <- prometheus.MustNewConstMetric(g.parked, prometheus.GaugeValue, float64(b.Parked))
	ch <- prometheus.MustNewConstMetric(g.age, prometheus.GaugeValue, now.Sub(readAt).Seconds())
}
