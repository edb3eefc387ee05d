package consumers

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

type consumerMetrics struct {
	consumed       *prometheus.CounterVec
	consumedByType []prometheus.Counter // the series of consumed, by the index of their label in typeLabels
	deadLettered   *prometheus.CounterVec
	dlqFailures    *prometheus.CounterVec
}

func newConsumerMetrics(reg prometheus.Registerer) *consumerMetrics {
	m := &consumerMetrics{
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomcast_events_consumed_total",
			Help: "Kafka messages consumed, each once however often it is retried, by event type (\"invalid\" when it has none of the contract's).",
		}, []string{"type"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomcast_events_dead_lettered_total",
			Help: "Messages the broker acknowledged on the dead-letter topic, by event type and reason (invalid, unknown_message, unstorable, panic).",
		}, []string{"type", "reason"}),
		dlqFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomcast_dead_letter_failures_total",
			Help: "Failed attempts to publish a dead letter, by cause (" + strings.Join(publishFailureCauses, ", ") + "); the dead letter waits and is tried again.",
		}, []string{"cause"}),
	}
	// Every series exists from the start, so dashboards show 0, not "no data".
	for _, t := range typeLabels {
		m.consumedByType = append(m.consumedByType, m.consumed.WithLabelValues(t))
	}
	for _, c := range publishFailureCauses {
		m.dlqFailures.WithLabelValues(c)
	}
	if reg != nil {
		reg.MustRegister(m.consumed, m.deadLettered, m.dlqFailures)
	}
	return m
}

// countConsumed counts one consumed message of d's type.
func (m *consumerMetrics) countConsumed(d *decoded, payload []byte) {
	d.typeLabel(payload)
	m.consumedByType[d.typ-1].Inc()
}

type batcherMetrics struct {
	size    prometheus.Histogram
	seconds prometheus.Histogram
	events  prometheus.Counter
	waiting prometheus.Gauge
}

func newBatcherMetrics(reg prometheus.Registerer) *batcherMetrics {
	m := &batcherMetrics{
		size: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "roomcast_projection_batch_events",
			Help:    "Events projected in one transaction.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000},
		}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "roomcast_projection_batch_seconds",
			Help:    "Time to project one batch (one transaction, commit included).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roomcast_projection_batched_events_total",
			Help: "Events committed by batch transactions (rate() gives events/s).",
		}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "roomcast_projection_waiting_events",
			Help: "Events handed to the batcher and not yet in a transaction (waiting for a free transaction or for an earlier event of their room).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.size, m.seconds, m.events, m.waiting)
	}
	return m
}
