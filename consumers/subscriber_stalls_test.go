package consumers_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/roomcast/roomcast/consumers"
)

func stallsOf(sub *consumers.KeyedSubscriber, cause string) []consumers.Stall {
	var out []consumers.Stall
	for _, s := range sub.Stalls(time.Now()) {
		if s.Cause == cause {
			out = append(out, s)
		}
	}
	return out
}

// A partition whose head message never completes is reported as a
// "partition" stall from the time its marked offset last moved, while the
// other partition makes progress (and is not reported once it has no lag);
// once the head completes, the stall is gone.
func TestKeyedSubscriberStallsReportAPartitionThatDoesNotAdvance(t *testing.T) {
	const behind, others = 50, 3000
	brokers, topic := keyedTopic(t, 2)
	producePartitionValues(t, brokers, topic, 0, textValues(0, behind))
	producePartitionValues(t, brokers, topic, 1, textValues(1, others))
	sub := newKeyedSubscriber(t, brokers, "stall-partition", func(c *consumers.KeyedSubscriberConfig) {
		c.MaxInFlight, c.NackResendSleep, c.DrainTimeout = 100, 5*time.Millisecond, time.Second
	})
	msgs, err := sub.Subscribe(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var fixed atomic.Bool // the head of partition 0 completes
	var done [2]atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for msg := range msgs {
				p, _ := consumers.MessagePartition(msg.Context())
				if string(msg.Payload) == "0/0" && !fixed.Load() {
					keyedNack(msg)
					continue
				}
				if p == 1 {
					time.Sleep(100 * time.Microsecond) // partition 1 lasts a while
				}
				done[p].Add(1)
				keyedAck(msg)
			}
		})
	}
	var first consumers.Stall
	keyedWaitFor(t, 30*time.Second, "a stall of partition 0", func() bool {
		for _, s := range stallsOf(sub, "partition") {
			if s.Detail[:len("partition "+topic+"/0 ")] == "partition "+topic+"/0 " {
				first = s
				return true
			}
		}
		return false
	})
	progress := done[1].Load()
	keyedWaitFor(t, 60*time.Second, "partition 1 to finish", func() bool { return done[1].Load() == others })
	stalls := stallsOf(sub, "partition")
	if len(stalls) != 1 || !stalls[0].Since.Equal(first.Since) {
		t.Fatalf("after partition 1 went from %d to %d messages, stalls %+v; want only partition 0's, since %v", progress, others, stalls, first.Since)
	}
	t.Logf("%s", stalls[0].Detail)
	fixed.Store(true)
	keyedWaitFor(t, 30*time.Second, "the stall to clear", func() bool { return len(stallsOf(sub, "partition")) == 0 })
	if n := done[0].Load(); n != behind {
		t.Errorf("partition 0: %d handed out, want %d", n, behind)
	}
	_ = sub.Close()
	wg.Wait()
}

// A process holding no partition reports an "unassigned" stall while its
// group has lag that does not shrink (the member holding the partition does
// not consume), and not while the group makes progress (an idle extra
// replica); roomcast_kafka_group_lag and roomcast_kafka_assigned_partitions
// show the reading.
func TestKeyedSubscriberStallsReportAProcessWithoutPartitionsWhileTheGroupIsStuck(t *testing.T) {
	const total = 4000
	brokers, topic := keyedTopic(t, 1)
	producePartitionValues(t, brokers, topic, 0, textValues(0, total))
	const group = "stall-unassigned"
	// Static members: a static member's id starts with its instance id, and
	// the range assignor gives the partition to the first member by id, so
	// the busy member keeps it when the idle one joins.
	tweak := func(id string) func(c *consumers.KeyedSubscriberConfig) {
		return func(c *consumers.KeyedSubscriberConfig) {
			c.GroupInstanceID = id
			c.GroupLagInterval = 50 * time.Millisecond
			c.Sarama.Consumer.Offsets.AutoCommit.Interval = 10 * time.Millisecond
		}
	}
	busy := newKeyedSubscriber(t, brokers, group, tweak("a-busy"))
	msgs, err := busy.Subscribe(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var consumed atomic.Int64
	pause := make(chan chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		for msg := range msgs {
			select {
			case resume := <-pause:
				<-resume
			default:
			}
			time.Sleep(time.Millisecond) // ~1,000 messages/s: a few seconds in all
			consumed.Add(1)
			keyedAck(msg)
		}
	})
	keyedWaitFor(t, 30*time.Second, "the busy member to hold the partition", func() bool { return len(heldPartitions(busy)) == 1 })

	idle := newKeyedSubscriber(t, brokers, group, tweak("b-idle"))
	idleWG := subscribe(t, idle, topic)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(consumers.NewLagCollector(idle))
	// Progress (2 s): the idle member reports nothing older than 20 readings.
	// (Between two readings the busy member commits ~50 messages.)
	const stallAfter = time.Second
	readings := 0
	for deadline := time.Now().Add(60 * time.Second); consumed.Load() < total/2; {
		if held := heldPartitions(idle); len(held) > 0 {
			t.Fatalf("the idle member holds %v: the test shows nothing", held)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the busy member consumed only %d of %d in 60s", consumed.Load(), total)
		}
		for _, s := range stallsOf(idle, "unassigned") {
			if time.Since(s.Since) > stallAfter {
				t.Fatalf("the idle member reports %q while the group makes progress (%d of %d consumed)", s.Detail, consumed.Load(), total)
			}
		}
		if _, ok := gauge(t, reg, "roomcast_kafka_group_lag"); ok {
			readings++
		}
		time.Sleep(10 * time.Millisecond)
	}
	if readings == 0 {
		t.Fatal("the idle member never read the group's lag")
	}

	// Stuck: the busy member stops consuming, still holding the partition.
	resume := make(chan struct{})
	pause <- resume
	keyedWaitFor(t, 30*time.Second, "an unassigned stall", func() bool { return len(stallsOf(idle, "unassigned")) == 1 })
	t.Logf("idle member: %s", stallsOf(idle, "unassigned")[0].Detail)
	if n, ok := gauge(t, reg, "roomcast_kafka_assigned_partitions"); !ok || n != 0 {
		t.Errorf("roomcast_kafka_assigned_partitions = %v (%v), want 0", n, ok)
	}
	if lag, ok := gauge(t, reg, "roomcast_kafka_group_lag"); !ok || lag <= 0 || lag > total/2 {
		t.Errorf("roomcast_kafka_group_lag = %v (%v), want the busy member's backlog (0 < lag <= %d)", lag, ok, total/2)
	}
	if s := stallsOf(busy, "partition"); len(s) != 1 {
		t.Errorf("the busy member reports %+v, want its partition's stall", s)
	}

	close(resume)
	keyedWaitFor(t, 30*time.Second, "the stall to clear as the group goes on", func() bool { return len(stallsOf(idle, "unassigned")) == 0 })
	keyedWaitFor(t, 60*time.Second, "every message", func() bool { return consumed.Load() == total })
	_ = idle.Close()
	_ = busy.Close()
	idleWG.Wait()
	wg.Wait()
}

// gauge returns the value of the one series of gauge name in reg, if there is one.
func gauge(t *testing.T, reg *prometheus.Registry, name string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue(), true
		}
	}
	return 0, false
}
