package consumers

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// lagCollector exports, at scrape time, the lag and in-flight messages of the
// partitions this process holds, and per topic the partitions it holds and
// the whole group's lag (from the last reading, see readGroupLag).
type lagCollector struct {
	sub           *KeyedSubscriber
	lag           *prometheus.Desc
	inFlight      *prometheus.Desc
	paused        *prometheus.Desc
	inFlightBytes *prometheus.Desc
	assigned      *prometheus.Desc
	groupLag      *prometheus.Desc
}

func newLagCollector(sub *KeyedSubscriber) *lagCollector {
	return &lagCollector{
		sub: sub,
		lag: prometheus.NewDesc("roomcast_kafka_consumer_lag",
			"Messages of a partition held by this process not yet committable: high-water mark minus the marked offset.",
			[]string{"topic", "partition"}, nil),
		inFlight: prometheus.NewDesc("roomcast_kafka_in_flight",
			"Messages of a partition read and not yet committable (bounded by KAFKA_MAX_IN_FLIGHT_PER_PARTITION).",
			[]string{"topic", "partition"}, nil),
		paused: prometheus.NewDesc("roomcast_kafka_partition_paused",
			"1 while a partition is not fetched so that the partitions further behind catch up (KAFKA_CATCH_UP_RATIO), else 0.",
			[]string{"topic", "partition"}, nil),
		inFlightBytes: prometheus.NewDesc("roomcast_kafka_in_flight_bytes",
			"Bytes (keys, values, headers) of the messages held by the subscriber over all partitions (bounded by KAFKA_MAX_IN_FLIGHT_BYTES).",
			nil, nil),
		assigned: prometheus.NewDesc("roomcast_kafka_assigned_partitions",
			"Partitions of the topic this process holds.",
			[]string{"topic"}, nil),
		groupLag: prometheus.NewDesc("roomcast_kafka_group_lag",
			"The consumer group's lag over the topic, all members together: high-water marks minus committed offsets, read every 15s.",
			[]string{"topic"}, nil),
	}
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lag
	ch <- c.inFlight
	ch <- c.paused
	ch <- c.inFlightBytes
	ch <- c.assigned
	ch <- c.groupLag
}

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.sub.Stats() {
		part := strconv.Itoa(int(st.Partition))
		if st.Marked >= 0 && st.HighWaterMark >= st.Marked {
			ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(st.HighWaterMark-st.Marked), st.Topic, part)
		}
		ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(st.InFlight), st.Topic, part)
		paused := 0.0
		if st.Paused {
			paused = 1
		}
		ch <- prometheus.MustNewConstMetric(c.paused, prometheus.GaugeValue, paused, st.Topic, part)
	}
	ch <- prometheus.MustNewConstMetric(c.inFlightBytes, prometheus.GaugeValue, float64(c.sub.InFlightBytes()))
	for _, ts := range c.sub.topicStats() {
		ch <- prometheus.MustNewConstMetric(c.assigned, prometheus.GaugeValue, float64(ts.assigned), ts.topic)
		if ts.lagKnown {
			ch <- prometheus.MustNewConstMetric(c.groupLag, prometheus.GaugeValue, float64(ts.lag), ts.topic)
		}
	}
}
