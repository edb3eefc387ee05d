package consumers

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/roomcast/roomcast/domain"
)

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
	// Every type's series exists from the start, so dashboards show 0, not "no data".
	for _, t := range domain.EventTypes {
		m.consumed.WithLabelValues(string(t))
	}
	m.consumed.WithLabelValues("invalid")
	if reg != nil {
		reg.MustRegister(m.consumed, m.deadLettered)
	}
	return m
}
