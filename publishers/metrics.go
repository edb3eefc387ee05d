package publishers

import "github.com/prometheus/client_golang/prometheus"

type dispatcherMetrics struct {
	calls       *prometheus.CounterVec
	callSeconds *prometheus.HistogramVec
	delivered   prometheus.Counter
	parked      *prometheus.CounterVec
	batchSize   prometheus.Histogram
}

func newDispatcherMetrics(reg prometheus.Registerer) *dispatcherMetrics {
	m := &dispatcherMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomcast_pusher_calls_total",
			Help: "Calls to Pusher's HTTP API by endpoint (batch_events, events) and status (200, 4xx/5xx code, network, client).",
		}, []string{"endpoint", "status"}),
		callSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "roomcast_pusher_call_seconds",
			Help:    "Duration of calls to Pusher's HTTP API.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"endpoint"}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roomcast_deliveries_delivered_total",
			Help: "Deliveries Pusher accepted.",
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
	}
	if reg != nil {
		reg.MustRegister(m.calls, m.callSeconds, m.delivered, m.parked, m.batchSize)
	}
	return m
}
