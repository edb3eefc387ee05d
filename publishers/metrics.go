package publishers

import "github.com/prometheus/client_golang/prometheus"

type dispatcherMetrics struct {
	calls       *prometheus.CounterVec
	callSeconds *prometheus.HistogramVec
	inFlight    prometheus.Gauge
	held        prometheus.Gauge
	delivered   prometheus.Counter
	parked      *prometheus.CounterVec
	batchSize   prometheus.Histogram
	latency     prometheus.Histogram
	purged      prometheus.Counter
	sources     *prometheus.CounterVec
}

func newDispatcherMetrics(reg prometheus.Registerer) *dispatcherMetrics {
	m := &dispatcherMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomcast_pusher_calls_total",
			Help: "Calls to Pusher's HTTP API by endpoint (batch_events, events, terminate_connections) and status (200, 4xx/5xx code, network, client).",
		}, []string{"endpoint", "status"}),
		callSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "roomcast_pusher_call_seconds",
			Help:    "Duration of calls to Pusher's HTTP API.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"endpoint"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "roomcast_pusher_calls_in_flight",
			Help: "Pusher calls in flight.",
		}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "roomcast_dispatcher_held_deliveries",
			Help: "Deliveries the dispatcher holds in memory (queued, in flight, or accepted and not yet marked).",
		}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roomcast_deliveries_delivered_total",
			Help: "Deliveries Pusher accepted (and marked so in the outbox).",
		}),
		parked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomcast_deliveries_parked_total",
			Help: "Deliveries Pusher rejects for their content, parked with the reason in the deliveries table, by status.",
		}, []string{"status"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "roomcast_pusher_call_events",
			Help:    "Deliveries carried by one accepted Pusher call.",
			Buckets: []float64{1, 2, 3, 5, 8, 10},
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "roomcast_delivery_latency_seconds",
			Help:    "Time from a delivery's commit to the outbox until Pusher accepted it.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
		}),
		purged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roomcast_deliveries_purged_total",
			Help: "Delivered outbox rows deleted after their retention.",
		}),
		sources: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomcast_dispatcher_deliveries_total",
			Help: "Deliveries the dispatcher took up, by how: handoff (handed over by this process's projector right after the commit) or read (read from the outbox: committed by another process, or handed over when they could not be placed in order).",
		}, []string{"source"}),
	}
	for _, source := range []string{"handoff", "read"} {
		m.sources.WithLabelValues(source)
	}
	for _, endpoint := range []string{"batch_events", "events", "terminate_connections"} {
		m.calls.WithLabelValues(endpoint, "200")
	}
	if reg != nil {
		reg.MustRegister(m.calls, m.callSeconds, m.inFlight, m.held, m.delivered, m.parked, m.batchSize, m.latency, m.purged, m.sources)
	}
	return m
}
