package publishers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/pusher/pusher-http-go/v5"

	"github.com/roomcast/roomcast/domain"
)

// Outbox is what the dispatcher needs from the store of owed deliveries.
// Pending returns deliveries oldest first, each room's in seq order.
type Outbox interface {
	Pending(ctx context.Context, limit int) ([]domain.Delivery, error)
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

// Pusher is the part of pusher-http-go's client the dispatcher calls.
type Pusher interface {
	TriggerBatch(batch []pusher.Event) (*pusher.TriggerBatchChannelsList, error)
	TriggerMultiWithParams(channels []string, event string, data interface{}, params pusher.TriggerParams) (*pusher.TriggerChannelsList, error)
}

// DispatcherConfig tunes a Dispatcher; zero values take the defaults.
type DispatcherConfig struct {
	// Fetch is how many pending deliveries one round reads (default 1000).
	Fetch int
	// PollInterval is how often the outbox is read when nothing wakes the
	// dispatcher (default 1s).
	PollInterval time.Duration
	// MinBackoff and MaxBackoff bound the pause after a failed round (default 200ms and 30s).
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
	Registerer             prometheus.Registerer
}

func (c *DispatcherConfig) setDefaults() {
	if c.Fetch <= 0 {
		c.Fetch = 1000
	}
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
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Dispatcher delivers what the outbox owes to Pusher. Deliveries of one
// channel are packed into batch calls of up to 10 events; a delivery for many
// channels is one trigger. A room's deliveries go out in seq order: after a
// failed call, none of that room's later deliveries is sent until it succeeds.
// A call Pusher rejects for its content is retried event by event, and the
// event it still rejects is parked with the reason. Deliveries are marked only
// once Pusher accepted them, so a crash re-sends at most the calls in flight.
type Dispatcher struct {
	outbox  Outbox
	pusher  Pusher
	cfg     DispatcherConfig
	log     *slog.Logger
	metrics *dispatcherMetrics
	wake    chan struct{}

	mu       sync.Mutex
	degraded error // set by 401/403/404, cleared by the next accepted call
}

// NewDispatcher returns a Dispatcher reading outbox and calling p.
func NewDispatcher(outbox Outbox, p Pusher, cfg DispatcherConfig) *Dispatcher {
	cfg.setDefaults()
	return &Dispatcher{
		outbox:  outbox,
		pusher:  p,
		cfg:     cfg,
		log:     cfg.Logger,
		metrics: newDispatcherMetrics(cfg.Registerer),
		wake:    make(chan struct{}, 1),
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

// Run delivers until ctx ends. A call in flight when ctx ends is finished
// and settled; what is not delivered stays owed. Run returns nil on ctx's end.
func (d *Dispatcher) Run(ctx context.Context) error {
	leader, shared := d.outbox.(Leader)
	if shared {
		defer leader.Release()
	}
	backoff := time.Duration(0)
	for {
		if ctx.Err() != nil {
			return nil
		}
		if shared {
			lead, err := leader.Lead(ctx)
			if err != nil && ctx.Err() == nil {
				d.log.Warn("dispatch lock", slog.Any("error", err))
			}
			if !lead {
				if !sleep(ctx, d.cfg.PollInterval) {
					return nil
				}
				continue
			}
		}
		n, err := d.round(ctx)
		switch {
		case err != nil:
			backoff = nextBackoff(backoff, d.cfg.MinBackoff, d.cfg.MaxBackoff)
			if !errors.Is(err, context.Canceled) {
				d.log.Warn("delivery round failed; backing off", slog.Any("error", err), slog.Duration("backoff", backoff))
			}
			if !sleep(ctx, backoff) {
				return nil
			}
			continue
		case n >= d.cfg.Fetch:
			backoff = 0
			continue // more is probably waiting
		}
		backoff = 0
		timer := time.NewTimer(d.cfg.PollInterval)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-d.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// errStopRound ends a round after a call failed in a way that concerns every
// later call too (Pusher down, credentials refused).
var errStopRound = errors.New("pusher unavailable")

// round sends one read of the outbox and returns how many deliveries it read.
// It returns an error when the round had to stop (the caller backs off).
func (d *Dispatcher) round(ctx context.Context) (int, error) {
	pending, err := d.outbox.Pending(ctx, d.cfg.Fetch)
	if err != nil {
		return 0, err
	}
	r := &roundState{blocked: map[string]bool{}}
	var batch []domain.Delivery
	flush := func() error {
		// Once stopping, finish the call in flight but start no new one.
		if len(batch) == 0 || ctx.Err() != nil {
			return nil
		}
		err := d.sendBatch(ctx, batch, r)
		batch = batch[:0]
		return err
	}
	for _, del := range pending {
		if ctx.Err() != nil {
			break
		}
		if del.RoomID != "" && r.blocked[del.RoomID] {
			continue
		}
		if len(del.Channels) == 1 {
			batch = append(batch, del)
			if len(batch) == domain.MaxPusherBatchEvents {
				if err := flush(); err != nil {
					return len(pending), err
				}
			}
			continue
		}
		if err := d.sendMulti(ctx, del, r); err != nil {
			return len(pending), err
		}
	}
	if err := flush(); err != nil {
		return len(pending), err
	}
	return len(pending), nil
}

type roundState struct {
	blocked map[string]bool // rooms with an unsent delivery this round
}

func (r *roundState) block(ds []domain.Delivery) {
	for _, del := range ds {
		if del.RoomID != "" {
			r.blocked[del.RoomID] = true
		}
	}
}

// sendBatch sends up to 10 single-channel deliveries in one batch call.
func (d *Dispatcher) sendBatch(ctx context.Context, batch []domain.Delivery, r *roundState) error {
	events := make([]pusher.Event, len(batch))
	for i, del := range batch {
		events[i] = pusher.Event{Channel: del.Channels[0], Name: del.Name, Data: del.Data}
		if del.SocketID != "" {
			socketID := del.SocketID
			events[i].SocketID = &socketID
		}
	}
	start := time.Now()
	_, err := d.pusher.TriggerBatch(events)
	return d.settle(ctx, "batch_events", batch, err, start, r, func() error {
		// Pusher answers for the whole call: find the event it rejects.
		for _, del := range batch {
			if ctx.Err() != nil {
				return nil
			}
			if del.RoomID != "" && r.blocked[del.RoomID] {
				continue
			}
			if err := d.sendBatch(ctx, []domain.Delivery{del}, r); err != nil {
				return err
			}
		}
		return nil
	})
}

// sendMulti sends one delivery to its (up to 100) channels in one trigger.
func (d *Dispatcher) sendMulti(ctx context.Context, del domain.Delivery, r *roundState) error {
	var params pusher.TriggerParams
	if del.SocketID != "" {
		socketID := del.SocketID
		params.SocketID = &socketID
	}
	start := time.Now()
	_, err := d.pusher.TriggerMultiWithParams(del.Channels, del.Name, del.Data, params)
	return d.settle(ctx, "events", []domain.Delivery{del}, err, start, r, nil)
}

// settle records the result of one call. splitRejected, when set, retries a
// rejected multi-event call event by event.
func (d *Dispatcher) settle(ctx context.Context, endpoint string, ds []domain.Delivery, callErr error, start time.Time, r *roundState, splitRejected func() error) error {
	// Settle even when ctx has just ended: the call is done, its result must stick.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	ids := make([]int64, len(ds))
	for i, del := range ds {
		ids[i] = del.ID
	}
	d.metrics.callSeconds.WithLabelValues(endpoint).Observe(time.Since(start).Seconds())
	if callErr == nil {
		d.metrics.calls.WithLabelValues(endpoint, "200").Inc()
		d.metrics.delivered.Add(float64(len(ds)))
		d.metrics.batchSize.Observe(float64(len(ds)))
		d.setDegraded(nil)
		if err := d.outbox.MarkDelivered(sctx, ids); err != nil {
			// Pusher has them; the next round re-sends them (at-least-once).
			r.block(ds)
			return fmt.Errorf("%w: %w", errStopRound, err)
		}
		return nil
	}
	kind, label := classify(callErr)
	d.metrics.calls.WithLabelValues(endpoint, label).Inc()
	reason := fmt.Sprintf("%s: %v", endpoint, callErr)
	switch kind {
	case rejected:
		if len(ds) > 1 && splitRejected != nil {
			return splitRejected()
		}
		del := ds[0]
		d.metrics.parked.WithLabelValues(label).Inc()
		d.log.Error("Pusher rejects a delivery: parked", slog.Int64("delivery_id", del.ID), slog.String("event_id", del.EventID),
			slog.String("room_id", del.RoomID), slog.String("event", del.Name), slog.String("reason", reason))
		if err := d.outbox.Park(sctx, del.ID, reason); err != nil {
			r.block(ds)
			return fmt.Errorf("%w: %w", errStopRound, err)
		}
		return nil
	case unauthorized:
		d.setDegraded(fmt.Errorf("pusher refuses roomcast's credentials or app (status %s): check PUSHER_APP_ID, PUSHER_KEY, PUSHER_SECRET and the app's state", label))
		d.log.Error("Pusher refuses roomcast's credentials: deliveries kept, readiness degraded",
			slog.String("status", label), slog.String("reason", reason))
	default:
		d.log.Warn("Pusher call failed; deliveries kept for retry", slog.String("status", label), slog.Int("events", len(ds)))
	}
	r.block(ds)
	if err := d.outbox.RecordFailure(sctx, ids, reason); err != nil {
		d.log.Warn("record delivery failure", slog.Any("error", err))
	}
	return fmt.Errorf("%w: %s", errStopRound, reason)
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
