package projections

import "github.com/prometheus/client_golang/prometheus"

type projectorMetrics struct {
	projected *prometheus.CounterVec
	failures  *prometheus.CounterVec
	conflicts *prometheus.CounterVec
	truncated *prometheus.CounterVec
	tooLarge  *prometheus.CounterVec
	seconds   prometheus.Histogram
}

func newProjectorMetrics(reg prometheus.Registerer) *projectorMetrics {
	m := &projectorMetrics{
		projected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomcast_events_projected_total",
			Help: "Events projected into Postgres, by type and outcome (applied, unchanged, duplicate, conflict, unknown_message, unstorable).",
		}, []string{"type", "outcome"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomcast_projection_failures_total",
			Help: "Projection transactions that failed transiently (retried), by event type.",
		}, []string{"type"}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomcast_event_id_conflicts_total",
			Help: "Events whose id was already stored with a different payload (the first one stands).",
		}, []string{"type"}),
		truncated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomcast_pusher_payloads_truncated_total",
			Help: "Deliveries whose text was shortened to fit Pusher's 10 KB data limit (sent with truncated: true).",
		}, []string{"event"}),
		tooLarge: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomcast_pusher_payloads_too_large_total",
			Help: "Deliveries that cannot fit Pusher's 10 KB data limit even truncated: parked, never sent.",
		}, []string{"event"}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "roomcast_projection_seconds",
			Help:    "Time to project one event (one transaction).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.projected, m.failures, m.conflicts, m.truncated, m.tooLarge, m.seconds)
	}
	return m
}
