package publishers

import (
	"context"
	"log/slog"
	"time"
)

// A delivery Pusher rejects for good (for its content: 400, 413, or the
// client's own checks) is parked in the outbox with the reason. When that
// write fails (Postgres away), the delivery is kept in memory and parked
// later, with backoff: it is never sent again meanwhile (Pusher has said
// no), it stays held so that no read of the outbox takes it up, and its
// room goes on, as it would once parked. Putting it back in its lane, as
// before, sent it to Pusher again at once, to be rejected and fail to park
// again: a loop as fast as both answered. After a crash before the park is
// written, the next leader sends it once more and parks it then.

// parkTimeout bounds one attempt to park a delivery.
const parkTimeout = 10 * time.Second

// toPark is a rejected delivery whose park failed.
type toPark struct {
	id     int64
	reason string
}

// park parks a rejected delivery, or keeps it to park later.
func (p *pipeline) park(ctx context.Context, id int64, reason string) {
	if len(p.parking) == 0 && p.tryPark(ctx, id, reason) {
		delete(p.known, id)
		return
	}
	p.parking = append(p.parking, toPark{id: id, reason: reason})
	if p.parkRetry.IsZero() {
		p.parkBackoff = nextBackoff(p.parkBackoff, p.d.cfg.MinBackoff, p.d.cfg.MaxBackoff)
		p.parkRetry = time.Now().Add(p.parkBackoff)
	}
}

// retryParks tries again to park what waits for it, once its backoff is over.
func (p *pipeline) retryParks(ctx context.Context) {
	if len(p.parking) == 0 || time.Now().Before(p.parkRetry) {
		return
	}
	for len(p.parking) > 0 {
		next := p.parking[0]
		if !p.tryPark(ctx, next.id, next.reason) {
			p.parkBackoff = nextBackoff(p.parkBackoff, p.d.cfg.MinBackoff, p.d.cfg.MaxBackoff)
			p.parkRetry = time.Now().Add(p.parkBackoff)
			return
		}
		delete(p.known, next.id)
		p.parking = p.parking[1:]
	}
	p.parking, p.parkRetry, p.parkBackoff = nil, time.Time{}, 0
}

func (p *pipeline) tryPark(ctx context.Context, id int64, reason string) bool {
	pctx, cancel := context.WithTimeout(ctx, parkTimeout)
	defer cancel()
	if err := p.d.outbox.Park(pctx, id, reason); err != nil {
		p.d.log.Warn("park a rejected delivery: will try again (it is not sent again)",
			slog.Int64("delivery_id", id), slog.Int("waiting", len(p.parking)), slog.Any("error", err))
		return false
	}
	return true
}
