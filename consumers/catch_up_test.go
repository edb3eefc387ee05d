package consumers_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/roomcast/roomcast/consumers"
)

// produceToPartitions produces n[p] messages to each partition p, keyed
// "p<p>-k<i%10>", with values "<p>/<i>".
func produceToPartitions(t *testing.T, brokers []string, topic string, n map[int32]int) {
	t.Helper()
	cfg := consumers.KafkaConfig{Brokers: brokers}.ProducerConfig()
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	producer, err := sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	// Small requests, so that the broker keeps small record batches: a
	// fetch returns whole batches, and one batch of a partition's messages
	// would be fetched at once.
	sent := map[int32]int{}
	for more := true; more; {
		more = false
		for p, count := range n {
			var batch []*sarama.ProducerMessage
			for i := sent[p]; i < min(sent[p]+20, count); i++ {
				batch = append(batch, &sarama.ProducerMessage{Topic: topic, Partition: p,
					Key: sarama.StringEncoder(fmt.Sprintf("p%d-k%d", p, i%10)), Value: sarama.StringEncoder(fmt.Sprintf("%d/%d", p, i))})
			}
			if len(batch) == 0 {
				continue
			}
			if err := producer.SendMessages(batch); err != nil {
				t.Fatal(err)
			}
			sent[p] += len(batch)
			more = true
		}
	}
}

// A partition with a quarter of another's backlog is not fetched until the
// other one has come down near it, so the two finish close together; without
// balancing (same pace for both) the small one is done while the large one
// still has most of its messages to go. Every message is handed out once
// either way.
//
// Nothing here depends on the machine's speed: the handlers start only once
// the small partition is paused (balanced) or both partitions were read from
// (unbalanced), and MaxPause is too long to end a pause, so only the
// backlogs decide when the small partition is fetched.
func TestKeyedSubscriberCatchUpBalancesPartitions(t *testing.T) {
	const large, small = 4000, 1000
	brokers, topic := keyedTopic(t, 2)
	produceToPartitions(t, brokers, topic, map[int32]int{0: large, 1: small})

	run := func(t *testing.T, group string, ratio float64) (leftAtSmallEnd int, sawPaused bool) {
		sc := keyedSaramaConfig()
		sc.Consumer.Fetch.Default = 1024 // a few dozen messages per partition and fetch
		sc.ChannelBufferSize = 16
		sub := newKeyedSubscriber(t, brokers, group, func(c *consumers.KeyedSubscriberConfig) {
			c.Sarama = sc
			c.MaxInFlight, c.MaxInFlightPerPartition, c.MaxInFlightPerKey = 40, 20, 20
			c.CatchUp = consumers.CatchUpConfig{Ratio: ratio, MinBacklog: 100, MaxPause: time.Minute, Interval: 2 * time.Millisecond}
		})
		msgs, err := sub.Subscribe(t.Context(), topic)
		if err != nil {
			t.Fatal(err)
		}
		// Until the handlers start, nothing is acked: each partition reads
		// at most its cap (20) of its backlog.
		start := make(chan struct{})
		go func() {
			defer close(start)
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				stats := sub.Stats()
				if len(stats) == 2 && stats[0].InFlight > 0 && stats[1].InFlight > 0 && (ratio < 0 || stats[1].Paused) {
					return
				}
			}
			t.Error("after 30s, the partitions were still not both read from, the small one paused if balancing")
		}()
		var mu sync.Mutex
		seen := map[string]bool{}
		count := map[int32]int{}
		leftAtSmallEnd = -1
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				<-start
				for msg := range msgs {
					time.Sleep(time.Millisecond) // ~20 messages per ms: the run lasts ~250ms
					p, _ := consumers.MessagePartition(msg.Context())
					mu.Lock()
					v := string(msg.Payload)
					if seen[v] {
						t.Errorf("%s handed out twice", v)
					}
					seen[v] = true
					count[p]++
					if p == 1 && count[1] == small {
						leftAtSmallEnd = large - count[0]
					}
					mu.Unlock()
					keyedAck(msg)
				}
			})
		}
		keyedWaitFor(t, 60*time.Second, "every message", func() bool {
			for _, st := range sub.Stats() {
				sawPaused = sawPaused || st.Paused
			}
			mu.Lock()
			defer mu.Unlock()
			return len(seen) == large+small
		})
		if err := sub.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		for i := range large {
			if !seen["0/"+strconv.Itoa(i)] {
				t.Fatalf("message 0/%d never handed out", i)
			}
		}
		return leftAtSmallEnd, sawPaused
	}

	left, paused := run(t, "catch-up-balanced", 0.5)
	t.Logf("balanced: %d of the large partition left when the small one finished", left)
	if !paused {
		t.Error("the small partition was never paused")
	}
	// Paused until the large one is below 2x its backlog, then paused again
	// whenever it gets below half the large one's, until fewer than
	// MinBacklog (100) are left: a few hundred left, plus what was fetched
	// before each pause took effect (a fetch is a few dozen messages).
	if left > 2000 {
		t.Errorf("balanced: the small partition finished with %d of the large one's %d left, want at most 2000", left, large)
	}
	left, paused = run(t, "catch-up-off", -1)
	t.Logf("unbalanced: %d left", left)
	if paused {
		t.Error("a partition was paused with balancing off")
	}
	if left < 2000 {
		t.Errorf("unbalanced: the small partition finished with %d of the large one's %d left, want more than 2000 (else the balanced run shows nothing)", left, large)
	}
}

// A second member joins while a partition is paused and leaves again: every
// message is still handed out. Pausing is per claim, so no partition stays
// unfetched after a rebalance (a new claim starts fetched; MaxPause is long
// here, so only that can bring a paused partition back).
func TestKeyedSubscriberCatchUpAcrossRebalance(t *testing.T) {
	const large, small = 6000, 1500
	brokers, topic := keyedTopic(t, 2)
	produceToPartitions(t, brokers, topic, map[int32]int{0: large, 1: small})
	tweak := func(c *consumers.KeyedSubscriberConfig) {
		c.Sarama.Consumer.Fetch.Default = 1024
		c.Sarama.ChannelBufferSize = 16
		c.MaxInFlight, c.MaxInFlightPerPartition, c.MaxInFlightPerKey = 40, 20, 20
		c.CatchUp = consumers.CatchUpConfig{Ratio: 0.5, MinBacklog: 100, MaxPause: time.Minute, Interval: 2 * time.Millisecond}
	}
	var mu sync.Mutex
	seen := map[string]int{}
	consume := func(msgs <-chan *message.Message) *sync.WaitGroup {
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for msg := range msgs {
					time.Sleep(2 * time.Millisecond)
					mu.Lock()
					seen[string(msg.Payload)]++
					mu.Unlock()
					keyedAck(msg)
				}
			})
		}
		return &wg
	}
	distinct := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }

	subA := newKeyedSubscriber(t, brokers, "catch-up-rebalance", tweak)
	msgsA, err := subA.Subscribe(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	wgA := consume(msgsA)
	keyedWaitFor(t, 20*time.Second, "a partition to be paused", func() bool {
		for _, st := range subA.Stats() {
			if st.Paused {
				return true
			}
		}
		return false
	})
	before := distinct()

	subB := newKeyedSubscriber(t, brokers, "catch-up-rebalance", tweak)
	ctxB, cancelB := context.WithCancel(t.Context())
	msgsB, err := subB.Subscribe(ctxB, topic)
	if err != nil {
		t.Fatal(err)
	}
	wgB := consume(msgsB)
	keyedWaitFor(t, 20*time.Second, "the second member to get a partition", func() bool {
		return len(subB.Stats()) > 0 && distinct() > before+100
	})
	cancelB()
	wgB.Wait()

	keyedWaitFor(t, 60*time.Second, "every message after the rebalances", func() bool { return distinct() == large+small })
	_ = subA.Close()
	wgA.Wait()
	if d := distinct(); d != large+small {
		t.Fatalf("%d distinct messages, want %d", d, large+small)
	}
	t.Logf("all %d messages handed out; a partition was paused when the second member joined", large+small)
}
