package publishers

import (
	"context"
	"log/slog"
	"time"
)

// acceptedDelivery is what marking a delivery Pusher accepted needs of it (a
// Delivery, payload included, is ~10 times the size).
type acceptedDelivery struct {
	id        int64
	createdAt time.Time
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
