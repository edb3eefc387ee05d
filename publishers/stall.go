package publishers

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A dispatcher stalls when Pusher keeps failing its calls (5xx, 429,
// timeouts, connection errors) or refusing roomcast's credentials (401,
// 403, 404): the deliveries wait in the outbox, however long, while the
// dispatcher backs off and probes. Once that has lasted StallAfter,
// roomcast_dispatcher_stalled is 1 and Problems() says so, until Pusher
// accepts a call again (or nothing is owed any more, or this process stops
// leading: the next leader reports for itself). A refusal of the
// credentials is in Problems() at once, as readiness always reported it.
// A delivery Pusher rejects for its content is parked, not a stall.

// failing is the state of the calls Pusher fails; guarded by Dispatcher.mu.
type failing struct {
	since  time.Time // first failed call since Pusher last accepted one; zero when none
	status string    // the last failed call's status label ("503", "network", "401")
}

// callFailed notes a failed call (retryable or unauthorized).
func (d *Dispatcher) callFailed(status string, at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failing.since.IsZero() {
		d.failing.since = at
	}
	d.failing.status = status
}

// callAccepted forgets a stall and a refusal: Pusher accepted a call.
func (d *Dispatcher) callAccepted() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failing = failing{}
	d.degraded = nil
}

// notFailing forgets a stall (a refusal of the credentials stays until an
// accepted call): nothing is owed, or this process no longer dispatches.
func (d *Dispatcher) notFailing() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failing = failing{}
}

// Stalled reports whether Pusher has failed every call for longer than
// StallAfter while deliveries are owed.
func (d *Dispatcher) Stalled() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.failing.since.IsZero() && time.Since(d.failing.since) >= d.cfg.StallAfter
}

// Problems returns short lines for readiness, without URLs, hosts or
// secrets: Pusher refusing roomcast's credentials (at once), or failing
// every call for longer than StallAfter. It returns nil when neither holds.
func (d *Dispatcher) Problems() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.degraded != nil {
		// The status is in the degraded error; see handle.
		line := d.degraded.Error()
		if !d.failing.since.IsZero() {
			line += fmt.Sprintf("; calls have failed for %s", roundDuration(time.Since(d.failing.since)))
		}
		return []string{line}
	}
	if d.failing.since.IsZero() || time.Since(d.failing.since) < d.cfg.StallAfter {
		return nil
	}
	lasted := roundDuration(time.Since(d.failing.since))
	last := "status " + d.failing.status
	switch d.failing.status {
	case "network":
		last = "a network error or timeout"
	case "client":
		last = "a client error"
	}
	return []string{fmt.Sprintf("pusher has failed every call for %s (last: %s): deliveries wait in the outbox", lasted, last)}
}

// roundDuration rounds d for a readiness line.
func roundDuration(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

func (d *Dispatcher) registerStall(reg prometheus.Registerer) {
	if reg == nil {
		return
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "roomcast_dispatcher_stalled",
		Help: "1 while deliveries owed to Pusher have waited longer than STALL_AFTER because Pusher fails every call or refuses roomcast's credentials.",
	}, func() float64 {
		if d.Stalled() {
			return 1
		}
		return 0
	}))
}
