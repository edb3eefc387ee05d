package publishers

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/pusher/pusher-http-go/v5"

	"github.com/roomcast/roomcast/domain"
)

// call is one Pusher API call: a batch of single-channel deliveries, one
// delivery for many channels, or one terminate delivery.
type call struct {
	ds       []domain.Delivery
	started  time.Time
	solo     bool // one delivery of p.solo
	isolated bool // a delivery sent alone after its batch was rejected
	lanes    []*lane
}

type callResult struct {
	call *call
	err  error
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
	if len(p.solo) > 0 {
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
	if len(p.solo) > 0 {
		del := p.solo[0]
		p.solo = p.solo[1:]
		return &call{ds: []domain.Delivery{del}, solo: true}
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
	switch {
	case c.solo && domain.IsTermination(c.ds[0]):
		endpoint = "terminate_connections"
		err = d.terminate(c.ds[0])
	case c.solo:
		endpoint = "events"
		del := c.ds[0]
		var params pusher.TriggerParams
		if del.SocketID != "" {
			socketID := del.SocketID
			params.SocketID = &socketID
		}
		_, err = d.pusher.TriggerMultiWithParams(del.Channels, del.Name, del.Data, params)
	default:
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
	if kind == rejected && c.solo || kind == rejected && len(c.ds) == 1 {
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

// nextBackoff doubles the previous pause within [lo, hi], with ±20% jitter.
func nextBackoff(prev, lo, hi time.Duration) time.Duration {
	next := min(max(prev*2, lo), hi)
	jitter := time.Duration(float64(next) * (rand.Float64()*0.4 - 0.2))
	return next + jitter
}
