package projections

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"github.com/roomcast/roomcast/domain"
)

// Outcome says what projecting one event did.
type Outcome int

// The outcomes of projecting an event (Result.Outcome).
const (
	// Applied: the event changed the read models; a room event got its seq and
	// the deliveries it owes are in the outbox.
	Applied Outcome = iota + 1
	// Unchanged: the event is recorded but changes nothing (a second create,
	// an edit of a deleted message, a second join...): no seq, no delivery.
	Unchanged
	// Duplicate: the id was seen before with the same payload; nothing was done.
	Duplicate
	// Conflict: the id was seen before with a different payload; the first
	// one stands, and the conflict is logged and counted.
	Conflict
)

// String names the outcome (used as a metric label).
func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case Unchanged:
		return "unchanged"
	case Duplicate:
		return "duplicate"
	case Conflict:
		return "conflict"
	}
	return "unknown"
}

// Origin is where an event was read from. Partition is -1 when it did not
// come from Kafka; Timestamp is the Kafka timestamp, used as occurred_at
// when the event has no CloudEvents time.
type Origin struct {
	Partition int32
	Offset    int64
	Timestamp time.Time
	// Redriven marks a dead letter sent back by `dlq redrive`: applied
	// only if not older than what it meets (see redrive.go).
	Redriven bool
}

// Projector projects batches of events into Postgres, each batch in one
// transaction (ProjectBatch).
type Projector struct {
	db      *gorm.DB
	log     *slog.Logger
	metrics *projectorMetrics
	owed    func()
	handoff func([]domain.Delivery) bool

	terminateOnLeave bool // see terminate.go

	lookUpUntil atomic.Int64 // unix ns: until then batches look their ids up first (see lookUpAfterStored)
	lookUpFor   time.Duration
}

// NewProjector returns a Projector writing to db. Its metrics are registered
// on reg when reg is not nil.
func NewProjector(db *gorm.DB, log *slog.Logger, reg prometheus.Registerer) *Projector {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Projector{db: db, log: log, metrics: newProjectorMetrics(reg), lookUpFor: lookUpAfterStored}
}

// OnDeliveriesOwed sets f to be called after every commit that added
// deliveries to the outbox (the dispatcher's wake-up). f must not block.
func (p *Projector) OnDeliveriesOwed(f func()) { p.owed = f }

// HandOffDeliveries sets f to be given the deliveries a ProjectBatch
// committed (ids, payloads and all, each room's in seq order), right after
// the commit, so that the dispatcher need not read back what was just
// written. When f returns true it took them and the OnDeliveriesOwed hook is
// not called; when it returns false, or a batch's deliveries cannot be
// handed over as written (a delete in the batch redacted some of them in
// Postgres), the hook is called as without f. f must not block.
func (p *Projector) HandOffDeliveries(f func([]domain.Delivery) bool) { p.handoff = f }
