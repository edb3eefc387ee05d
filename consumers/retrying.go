package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
)

// retrying follows the events that fail transiently (Postgres down or
// restarting): how many there are and since when each first failed, across
// the retries of one delivery and the redeliveries after a nack (the entry
// travels with the message's decoded state, which the subscriber hands out
// again). Its log lines are the only ones such failures produce: one per
// cause when it appears, a summary every 30 s while it lasts, one when it
// clears. The failures themselves are retried by the Retry middleware and
// then nacked, as before.
type retrying struct {
	list *waitList
}

// newRetrying follows retries whose backoff is capped at maxInterval: an
// entry neither failing nor attempted for well over that was let go of.
func newRetrying(log *slog.Logger, maxInterval time.Duration) *retrying {
	return &retrying{list: newWaitList(log, 3*maxInterval+10*time.Second, waitText{
		unit:    "events",
		start:   "events are failing and being retried",
		summary: "events are still failing and being retried",
		cleared: "events no longer failing",
	})}
}

// track is the middleware under the Retry middleware: it sees each attempt.
// On the success path it costs a context lookup and a nil check.
func (r *retrying) track(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		d := stateOf(msg)
		if d != nil && d.retry != nil {
			r.list.attempt(d.retry, time.Now())
		}
		produced, err := h(msg)
		if d == nil {
			return produced, err
		}
		switch {
		case err == nil || isPermanent(err):
			if d.retry != nil {
				r.list.release(d.retry, time.Now())
				d.retry = nil
			}
			return produced, err
		case msg.Context().Err() != nil:
			// Given up: the partition is being released or the worker stops;
			// the message is delivered again, here or elsewhere.
			if d.retry != nil {
				r.list.release(d.retry, time.Now())
			}
		default:
			d.retry = r.list.fail(d.retry, failureCause(err), time.Now())
		}
		return produced, reportedError{err}
	}
}

// collectors are roomcast_events_retrying and roomcast_retry_oldest_seconds, read at scrape time.
func (r *retrying) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "roomcast_events_retrying",
			Help: "Events failing transiently (Postgres unavailable) and being retried.",
		}, func() float64 { return float64(r.list.state(time.Now()).n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "roomcast_retry_oldest_seconds",
			Help: "Time since the first failure of the oldest event still being retried (0 when none is).",
		}, func() float64 {
			now := time.Now()
			if s := r.list.state(now); s.n > 0 {
				return now.Sub(s.oldest).Seconds()
			}
			return 0
		}),
	}
}

// stalls is the retry stall, since the first failure of the oldest event
// still failing, if any.
func (r *retrying) stalls(now time.Time) []Stall {
	s := r.list.state(now)
	if s.n == 0 {
		return nil
	}
	return []Stall{{Cause: "retry", Since: s.oldest,
		Detail: fmt.Sprintf("%d %s failing and retried: %s", s.n, plural(s.n, "event", "events"), s.cause)}}
}

// reportedError is a failure that roomcast's own lines already report
// (retrying, dead letters): the router's "Handler returned error" line for it
// goes to Debug (see quietLogger), instead of one ERROR per event per attempt.
type reportedError struct{ error }

func (e reportedError) Unwrap() error { return e.error }

func isReported(err error) bool {
	var r reportedError
	return errors.As(err, &r) || errors.Is(err, context.Canceled)
}
