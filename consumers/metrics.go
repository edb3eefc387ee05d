package consumers

import "github.com/prometheus/client_golang/prometheus"

type consumerMetrics struct {
	consumed     *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
}

func newConsumerMetrics(reg prometheus.Registerer) *consumerMetrics {
	m := &consumerMetrics{
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomcast_events_consumed_total",
			Help: "Kafka messages consumed, by event type (\"invalid\" when it has none of the contract's).",
		}, []string{"type"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomcast_events_dead_lettered_total",
			Help: "Messages sent to the dead-letter topic, by event type and reason (invalid, unknown_message, panic).",
		}, []string{"type", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.consumed, m.deadLettered)
	}
	return m
}
