package consumers_test

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/roomcast/roomcast/consumers"
)

// producePartitionValues produces values to one partition, each with a key of its own.
func producePartitionValues(t testing.TB, brokers []string, topic string, partition int32, values [][]byte) {
	t.Helper()
	cfg := consumers.KafkaConfig{Brokers: brokers}.ProducerConfig()
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	cfg.Producer.MaxMessageBytes = 4 << 20
	producer, err := sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	for i, v := range values {
		pm := &sarama.ProducerMessage{Topic: topic, Partition: partition,
			Key: sarama.StringEncoder(fmt.Sprintf("p%d-k%d", partition, i)), Value: sarama.ByteEncoder(v)}
		if _, _, err := producer.SendMessage(pm); err != nil {
			t.Fatal(err)
		}
	}
}

func textValues(partition int32, n int) [][]byte {
	vs := make([][]byte, n)
	for i := range vs {
		vs[i] = fmt.Appendf(nil, "%d/%d", partition, i)
	}
	return vs
}

// A partition whose head message never completes (its handler keeps failing
// it) holds what it read behind it, up to its own cap: the other partitions
// go on with the rest of the budget, by count and by bytes.
func TestKeyedSubscriberStuckPartitionDoesNotStarveTheOthers(t *testing.T) {
	const stuckBehind, others = 200, 1500
	brokers, topic := keyedTopic(t, 2)
	producePartitionValues(t, brokers, topic, 0, textValues(0, stuckBehind))
	producePartitionValues(t, brokers, topic, 1, textValues(1, others))
	for _, tc := range []struct {
		name  string
		tweak func(*consumers.KeyedSubscriberConfig)
	}{
		// MaxInFlightPerPartition left to its default.
		{"count", func(c *consumers.KeyedSubscriberConfig) { c.MaxInFlight = 20 }},
		{"bytes", func(c *consumers.KeyedSubscriberConfig) { c.MaxInFlightBytes = 400 }}, // ~40 of these values
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub := newKeyedSubscriber(t, brokers, "stuck-"+tc.name, func(c *consumers.KeyedSubscriberConfig) {
				c.MaxInFlightPerKey, c.NackResendSleep, c.DrainTimeout = 1, 5*time.Millisecond, time.Second
				tc.tweak(c)
			})
			msgs, err := sub.Subscribe(t.Context(), topic)
			if err != nil {
				t.Fatal(err)
			}
			var done [2]atomic.Int64
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for msg := range msgs {
						if string(msg.Payload) == "0/0" { // the head of partition 0: never completes
							keyedNack(msg)
							continue
						}
						p, _ := consumers.MessagePartition(msg.Context())
						done[p].Add(1)
						keyedAck(msg)
					}
				})
			}
			keyedWaitFor(t, 60*time.Second, "every message of partition 1", func() bool { return done[1].Load() == others })
			t.Logf("partition 1: all %d handed out; partition 0: %d behind its stuck head", others, done[0].Load())
			_ = sub.Close()
			wg.Wait()
		})
	}
}

// paddedValues returns n values of size bytes, each starting with "<partition>/<i> ".
func paddedValues(partition int32, n, size int) [][]byte {
	vs := make([][]byte, n)
	for i := range vs {
		v := make([]byte, size)
		copy(v, fmt.Sprintf("%d/%d ", partition, i))
		vs[i] = v
	}
	return vs
}

// heapPeak samples the live heap (as marked by the last collection: the
// heap's objects right now include garbage, which depends on GOGC and on
// the broker's copy of the backlog in this process) until stop is closed,
// and returns the largest value seen. Meanwhile the collector runs after
// every 1% of growth (~2.5 MiB over the broker's copy of a 240 MB backlog),
// so that the live heap is marked often (the backlog's bytes are not
// scanned: that is cheap).
func heapPeak(stop <-chan struct{}) func() uint64 {
	var peak atomic.Uint64
	done := make(chan struct{})
	gcPercent := debug.SetGCPercent(1)
	go func() {
		defer close(done)
		defer debug.SetGCPercent(gcPercent)
		s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return func() uint64 { <-done; return peak.Load() }
}

func heapNow() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// consumeBacklog hands every message of sub's topic to workers goroutines
// that take work each, until want distinct payload prefixes were seen; it
// returns the largest InFlightBytes observed meanwhile. The workers ack
// nothing until held returns true for InFlightBytes (nil: at once).
func consumeBacklog(t testing.TB, sub *consumers.KeyedSubscriber, topic string, want, workers int, work time.Duration, held func(int64) bool) (maxHeld int64) {
	t.Helper()
	msgs, err := sub.Subscribe(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	release := make(chan struct{})
	if held == nil {
		close(release)
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for msg := range msgs {
				<-release
				time.Sleep(work)
				id, _, _ := strings.Cut(string(msg.Payload[:min(len(msg.Payload), 32)]), " ")
				mu.Lock()
				seen[id] = true
				mu.Unlock()
				keyedAck(msg)
			}
		})
	}
	var most atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			n := sub.InFlightBytes()
			if n > most.Load() {
				most.Store(n)
			}
			if held != nil && held(n) {
				held = nil
				close(release)
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Microsecond):
			}
		}
	}()
	keyedWaitFor(t, 120*time.Second, fmt.Sprintf("all %d messages", want), func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == want
	})
	close(stop)
	<-sampled
	_ = sub.Close()
	wg.Wait()
	if n := sub.InFlightBytes(); n != 0 {
		t.Errorf("%d bytes still counted as held after Close", n)
	}
	return most.Load()
}

// A backlog of 1 MB messages with a slow handler: the subscriber never holds
// more than its byte budget, and every message is handed out; a message
// larger than the whole budget still gets through.
func TestKeyedSubscriberBoundsInFlightBytes(t *testing.T) {
	t.Run("1 MB messages", func(t *testing.T) {
		const partitions, perPartition, size, budget = 4, 16, 1_000_000, 8 << 20
		brokers, topic := keyedTopic(t, partitions)
		for p := range int32(partitions) {
			producePartitionValues(t, brokers, topic, p, paddedValues(p, perPartition, size))
		}
		base := heapNow()
		stop := make(chan struct{})
		peak := heapPeak(stop)
		sub := newKeyedSubscriber(t, brokers, "bytes-1mb", func(c *consumers.KeyedSubscriberConfig) {
			c.MaxInFlightBytes, c.MaxInFlightPerKey = budget, 100
		})
		// The handlers start once no further message fits, then take 40
		// messages/s.
		held := consumeBacklog(t, sub, topic, partitions*perPartition, 2, 50*time.Millisecond,
			func(n int64) bool { return n > budget-size })
		close(stop)
		t.Logf("%d messages of %d bytes over %d partitions: at most %d bytes held (budget %d); peak live heap %.0f MiB above the %.0f MiB before (the in-process broker's copy of the backlog)",
			partitions*perPartition, size, partitions, held, budget, float64(peak()-min(peak(), base))/(1<<20), float64(base)/(1<<20))
		if held > budget {
			t.Errorf("%d bytes held at once, budget %d", held, budget)
		}
	})
	t.Run("larger than the budget", func(t *testing.T) {
		const size, budget = 600_000, 256 << 10
		brokers, topic := keyedTopic(t, 2)
		for p := range int32(2) {
			producePartitionValues(t, brokers, topic, p, paddedValues(p, 3, size))
		}
		sub := newKeyedSubscriber(t, brokers, "bytes-oversized", func(c *consumers.KeyedSubscriberConfig) {
			c.MaxInFlightBytes = budget
		})
		held := consumeBacklog(t, sub, topic, 6, 4, time.Millisecond, nil)
		// Each is charged half the budget: two are held at most (with their keys).
		if held > 2*(size+16) {
			t.Errorf("%d bytes held at once, want at most two messages of %d", held, size)
		}
	})
}

// BenchmarkKeyedSubscriber1MBBacklog drains a backlog of 1 MB messages (12
// partitions, KEYED_BACKLOG_MESSAGES per partition, 20 by default) with
// roomcast's defaults (MaxInFlightBytes 32 MiB, KafkaConfig.ConsumerConfig):
// the handlers ack nothing until the budget is full, then take 50 ms each,
// four at a time (80 messages/s: slower than the fetches, so Sarama's own
// buffers fill too; the worst case). It reports the peak live heap above the
// heap before (which holds the in-process broker's copy of the backlog; the
// broker's fetch buffers are in the figure too) and the most bytes held:
//
//	go test -run '^$' -bench BenchmarkKeyedSubscriber1MBBacklog -benchtime 1x ./consumers/
func BenchmarkKeyedSubscriber1MBBacklog(b *testing.B) {
	const partitions, size = 12, 1_000_000
	perPartition := 20
	if v, err := strconv.Atoi(os.Getenv("KEYED_BACKLOG_MESSAGES")); err == nil && v > 0 {
		perPartition = v
	}
	brokers, topic := keyedTopic(b, partitions)
	for p := range int32(partitions) {
		producePartitionValues(b, brokers, topic, p, paddedValues(p, perPartition, size))
	}
	b.ResetTimer()
	for i := range b.N {
		base := heapNow()
		stop := make(chan struct{})
		peak := heapPeak(stop)
		cfg := consumers.KeyedSubscriberConfig{Brokers: brokers, ConsumerGroup: fmt.Sprintf("bench-1mb-%d", i), MaxInFlightPerKey: 100}
		sub, err := consumers.NewKeyedSubscriber(cfg)
		if err != nil {
			b.Fatal(err)
		}
		const budget = consumers.DefaultMaxInFlightBytes
		held := consumeBacklog(b, sub, topic, partitions*perPartition, 4, 50*time.Millisecond,
			func(n int64) bool { return n > budget-size })
		close(stop)
		b.ReportMetric(float64(peak()-min(peak(), base))/(1<<20), "peak-heap-MiB")
		b.ReportMetric(float64(held)/(1<<20), "peak-held-MiB")
	}
}
