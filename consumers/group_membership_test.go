package consumers_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/roomcast/roomcast/consumers"
)

// membershipTweak gives members a session timeout far above what any of
// these tests waits for: a partition that moves before it did not wait for
// a session to time out.
func membershipTweak(instanceID string) func(*consumers.KeyedSubscriberConfig) {
	return func(c *consumers.KeyedSubscriberConfig) {
		c.GroupInstanceID = instanceID
		c.Sarama.Consumer.Group.Session.Timeout = 60 * time.Second
		c.DrainTimeout = time.Second
	}
}

// ackAll acks every message of msgs until it is closed.
func ackAll(msgs <-chan *message.Message) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Go(func() {
		for msg := range msgs {
			keyedAck(msg)
		}
	})
	return &wg
}

func heldPartitions(sub *consumers.KeyedSubscriber) []int32 {
	var ps []int32
	for _, st := range sub.Stats() {
		ps = append(ps, st.Partition)
	}
	return ps
}

func subscribe(t *testing.T, sub *consumers.KeyedSubscriber, topic string) *sync.WaitGroup {
	t.Helper()
	msgs, err := sub.Subscribe(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	return ackAll(msgs)
}

// A static member (GroupInstanceID) that is killed, so that it neither
// commits nor leaves, and started again with the same id takes its
// partitions back at once: the broker replaces the old member by the new
// one without a rebalance, instead of waiting for the old one's session to
// time out (60s here). The other member keeps its partition throughout.
func TestKeyedSubscriberStaticMemberRestartsIntoItsPartitions(t *testing.T) {
	const group = "static-restart"
	brokers, topic, a, wgA, b, wgB := twoStaticMembers(t, group)
	mine, theirs := heldPartitions(a), heldPartitions(b)

	if err := a.Crash(); err != nil {
		t.Fatal(err)
	}
	wgA.Wait()
	killed := time.Now()
	again := newKeyedSubscriber(t, brokers, group, membershipTweak("worker-a"))
	wgAgain := subscribe(t, again, topic)
	var stolen []int32
	// Well below the 60s session timeout the old member would hold them for.
	keyedWaitFor(t, 30*time.Second, "the restarted member to hold its partition again", func() bool {
		if held := heldPartitions(b); !slices.Equal(held, theirs) && len(held) > 0 {
			stolen = held
		}
		return slices.Equal(heldPartitions(again), mine)
	})
	t.Logf("the restarted member held partition %v again %v after the kill", mine, time.Since(killed).Round(time.Millisecond))
	if stolen != nil {
		t.Errorf("the other member held %v in between, want only its own %v (no rebalance)", stolen, theirs)
	}
	_ = again.Close()
	_ = b.Close()
	wgAgain.Wait()
	wgB.Wait()
}

// A static member stopped gracefully leaves the group explicitly (Sarama
// does not, for static members): its partitions move to the other member
// at once, not after its session timed out (60s here).
func TestKeyedSubscriberStaticMemberLeavesOnStop(t *testing.T) {
	const group = "static-leave"
	_, _, a, wgA, b, wgB := twoStaticMembers(t, group)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	wgA.Wait()
	stopped := time.Now()
	keyedWaitFor(t, 30*time.Second, "the other member to hold both partitions", func() bool { return len(heldPartitions(b)) == 2 })
	t.Logf("both partitions with the other member %v after the stop", time.Since(stopped).Round(time.Millisecond))
	_ = b.Close()
	wgB.Wait()
}

// Stopping never waits for a JoinGroup the broker holds: a member joins
// while the group waits (up to its rebalance timeout, 25s here) for a
// killed member to rejoin, and Close returns at once instead of when the
// broker answers.
func TestKeyedSubscriberStopsWhileItsJoinIsHeld(t *testing.T) {
	brokers, topic := keyedTopic(t, 1)
	const group = "held-join"
	tweak := func(c *consumers.KeyedSubscriberConfig) {
		membershipTweak("")(c)
		c.Sarama.Consumer.Group.Rebalance.Timeout = 25 * time.Second
	}
	a := newKeyedSubscriber(t, brokers, group, tweak)
	wgA := subscribe(t, a, topic)
	keyedWaitFor(t, 30*time.Second, "the first member to hold the partition", func() bool { return len(heldPartitions(a)) == 1 })
	if err := a.Crash(); err != nil {
		t.Fatal(err)
	}
	wgA.Wait()

	b := newKeyedSubscriber(t, brokers, group, tweak)
	wgB := subscribe(t, b, topic)
	admin, err := sarama.NewClusterAdmin(brokers, keyedSaramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	keyedWaitFor(t, 30*time.Second, "the group to wait for its members to rejoin", func() bool {
		gs, err := admin.DescribeConsumerGroups([]string{group})
		return err == nil && len(gs) == 1 && gs[0].State == "PreparingRebalance"
	})
	began := time.Now()
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second): // the broker holds the join for 25s
		t.Fatal("Close waited for the JoinGroup the broker holds")
	}
	t.Logf("Close returned %v after it was called, the join still held", time.Since(began).Round(time.Millisecond))
	wgB.Wait()
}

// twoStaticMembers starts two static members ("worker-a" and "worker-b")
// of group on a new two-partition topic with a backlog, and returns once
// each holds one partition.
func twoStaticMembers(t *testing.T, group string) (brokers []string, topic string, a *consumers.KeyedSubscriber, wgA *sync.WaitGroup, b *consumers.KeyedSubscriber, wgB *sync.WaitGroup) {
	t.Helper()
	brokers, topic = keyedTopic(t, 2)
	produceKeyed(t, brokers, topic, keyedEvents(20, 200))
	a = newKeyedSubscriber(t, brokers, group, membershipTweak("worker-a"))
	wgA = subscribe(t, a, topic)
	b = newKeyedSubscriber(t, brokers, group, membershipTweak("worker-b"))
	wgB = subscribe(t, b, topic)
	keyedWaitFor(t, 30*time.Second, "one partition each", func() bool {
		return len(heldPartitions(a)) == 1 && len(heldPartitions(b)) == 1
	})
	return brokers, topic, a, wgA, b, wgB
}
