package publishers

import (
	"context"
	"log/slog"
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
//     events, across lanes; a delivery for many channels is one trigger;
//     a terminate delivery (domain.TerminateDelivery) is one terminate
//     call, never batched and in no lane, so in no order with any room's
//     events.
//   - Deliveries are marked only once Pusher accepted them (batched into one
//     update per turn), so a crash re-sends at most the calls in flight and
//     the marks not yet written.
//   - 5xx, 429 and network errors put the call's deliveries back at the head
//     of their lanes and pause all sending with exponential backoff and
//     jitter; 401, 403 and 404 do the same and mark the dispatcher degraded;
//     a call Pusher rejects for its content (400, 413) is retried event by
//     event and the event it still rejects is parked with the reason.
type Dispatcher struct {
	outbox     Outbox
	pusher     Pusher
	terminator Terminator // nil when p cannot terminate connections (see terminatorOf)
	cfg        DispatcherConfig
	log        *slog.Logger
	metrics    *dispatcherMetrics
	wake       chan struct{}

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
		outbox:     outbox,
		pusher:     p,
		terminator: terminatorOf(p),
		cfg:        cfg,
		log:        cfg.Logger,
		metrics:    newDispatcherMetrics(cfg.Registerer),
		wake:       make(chan struct{}, 1),

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
