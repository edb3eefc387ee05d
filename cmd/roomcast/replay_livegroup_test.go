package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// Without -notify, a replay leaves what the live consumer group has not
// consumed yet to it, so that its worker notifies clients of those events.
// A partition the group has no committed offset on, while it has some on
// others, is left whole to it (it starts there at KAFKA_INITIAL_OFFSET,
// earliest), or read when the group starts at the latest offset.
func TestReplayKafkaLeavesUnconsumedToTheLiveGroup(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	events := history("kl", 4, 3)
	s.produceEvents(events...)
	// A lagging group: two messages behind on every partition with at
	// least three; no commit at all on those with one or two.
	hwms := s.highWaterMarks()
	marks := map[int32]int64{}
	var left, uncommitted int64
	for p, hwm := range hwms {
		switch {
		case hwm >= 3:
			marks[p] = hwm - 2
			left += 2
		case hwm > 0:
			uncommitted += hwm
		}
	}
	if left == 0 {
		t.Fatal("no partition got enough messages")
	}
	s.commitGroup("lagging", s.topic, marks)
	r := s.mustCmd(nil, "replay", "kafka", "-from", "earliest", "-live-group", "lagging")
	if want := fmt.Sprintf("leaving %d messages that consumer group lagging has not consumed yet", left+uncommitted); !strings.Contains(r.stdout, want) {
		t.Errorf("want %q in:\n%s", want, r.stdout)
	}
	if want := fmt.Sprintf("%d events read", int64(len(events))-left-uncommitted); !strings.Contains(r.stdout, want) {
		t.Errorf("want %q in:\n%s", want, r.stdout)
	}
	// A group that starts at the latest offset never reads the partitions
	// it has not committed on: the replay reads them.
	l := s.mustCmd(map[string]string{"KAFKA_INITIAL_OFFSET": "latest"}, "replay", "kafka", "-from", "earliest", "-live-group", "lagging")
	if want := fmt.Sprintf("%d events read", int64(len(events))-left); !strings.Contains(l.stdout, want) {
		t.Errorf("KAFKA_INITIAL_OFFSET=latest: want %q in:\n%s", want, l.stdout)
	}
	// With -notify nothing is left: the replay notifies itself.
	n := s.mustCmd(nil, "replay", "kafka", "-from", "earliest", "-live-group", "lagging", "-notify")
	if strings.Contains(n.stdout, "leaving") || !strings.Contains(n.stdout, fmt.Sprintf("%d events read", len(events))) {
		t.Errorf("replay -notify:\n%s", n.stdout)
	}
}

// Without -notify, a live group that Kafka does not know, or that has no
// committed offset on the topic and no member consuming it, is an error
// that says what to check and how to read to the end on purpose; nothing is
// applied. `-live-group -` reads to the end.
func TestReplayKafkaRefusesAWrongLiveGroup(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	events := history("kw", 3, 3)
	s.produceEvents(events...)
	// A group that consumed the dead-letter topic, not the events topic.
	s.commitGroup("dlq-reader", s.dlq, map[int32]int64{0: 0})

	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"unknown group", []string{"-live-group", "no-such-group"}, []string{`"no-such-group"`, "not known to Kafka"}},
		{"default group that never ran", nil, []string{`"roomcast-test"`, "KAFKA_CONSUMER_GROUP"}},
		{"group of another topic", []string{"-live-group", "dlq-reader"}, []string{`"dlq-reader"`, "no committed offset on " + s.topic}},
	} {
		r := s.cmd(t.Context(), nil, append([]string{"replay", "kafka", "-from", "earliest"}, c.args...)...)
		if r.err == nil {
			t.Errorf("%s: the replay succeeded:\n%s", c.name, r.stdout)
			continue
		}
		for _, w := range append(c.want, "-live-group -") {
			if !strings.Contains(r.err.Error(), w) {
				t.Errorf("%s: error lacks %q: %v", c.name, w, r.err)
			}
		}
	}
	if n := s.mustCount(`SELECT count(*) FROM events`); n != 0 {
		t.Fatalf("refused replays applied %d events", n)
	}
	r := s.mustCmd(nil, "replay", "kafka", "-from", "earliest", "-live-group", "-")
	if want := fmt.Sprintf("%d events read", len(events)); !strings.Contains(r.stdout, want) {
		t.Errorf("-live-group -: want %q in:\n%s", want, r.stdout)
	}
}

// A live group that consumes the topic but has committed nothing yet (its
// worker just started) is known to have consumed nothing: everything is
// left to it.
func TestReplayKafkaLeavesAllToAGroupThatHasNotCommittedYet(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	events := history("kn", 3, 3)
	s.produceEvents(events...)
	cfg := sarama.NewConfig()
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cg, err := sarama.NewConsumerGroup(s.brokers, "starting", cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	joined := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- cg.Consume(ctx, []string{s.topic}, holdClaims{joined}) }()
	defer func() {
		cancel()
		<-done
		_ = cg.Close()
	}()
	select {
	case <-joined:
	case err := <-done:
		t.Fatalf("consumer group: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the consumer group did not get its partitions")
	}
	r := s.mustCmd(nil, "replay", "kafka", "-from", "earliest", "-live-group", "starting")
	if want := fmt.Sprintf("leaving %d messages that consumer group starting has not consumed yet", len(events)); !strings.Contains(r.stdout, want) {
		t.Errorf("want %q in:\n%s", want, r.stdout)
	}
	if !strings.Contains(r.stdout, ": 0 events read") {
		t.Errorf("the replay read events the group will consume:\n%s", r.stdout)
	}
}

// highWaterMarks returns every partition's high-water mark of the topic.
func (s *stack) highWaterMarks() map[int32]int64 {
	s.t.Helper()
	client, err := sarama.NewClient(s.brokers, sarama.NewConfig())
	if err != nil {
		s.t.Fatal(err)
	}
	defer func() { _ = client.Close() }()
	parts, err := client.Partitions(s.topic)
	if err != nil {
		s.t.Fatal(err)
	}
	out := map[int32]int64{}
	for _, p := range parts {
		if out[p], err = client.GetOffset(s.topic, p, sarama.OffsetNewest); err != nil {
			s.t.Fatal(err)
		}
	}
	return out
}

// commitGroup commits marks (partition -> offset) of topic for group, as a
// member that consumed that far and left.
func (s *stack) commitGroup(group, topic string, marks map[int32]int64) {
	s.t.Helper()
	cfg := sarama.NewConfig()
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cg, err := sarama.NewConsumerGroup(s.brokers, group, cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(s.t.Context(), 30*time.Second)
	defer cancel()
	if err := cg.Consume(ctx, []string{topic}, markOffsets{marks, cancel}); err != nil {
		s.t.Fatal(err)
	}
	if err := cg.Close(); err != nil { // commits the marks
		s.t.Fatal(err)
	}
}

// markOffsets marks offsets when its session starts, then ends it.
type markOffsets struct {
	marks map[int32]int64
	done  func()
}

func (m markOffsets) Setup(sess sarama.ConsumerGroupSession) error {
	for topic, parts := range sess.Claims() {
		for _, p := range parts {
			if off, ok := m.marks[p]; ok {
				sess.MarkOffset(topic, p, off, "")
			}
		}
	}
	m.done()
	return nil
}

func (markOffsets) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (markOffsets) ConsumeClaim(sarama.ConsumerGroupSession, sarama.ConsumerGroupClaim) error {
	return nil
}

// holdClaims takes its partitions and consumes nothing until its session ends.
type holdClaims struct{ joined chan struct{} }

func (h holdClaims) Setup(sarama.ConsumerGroupSession) error {
	select {
	case <-h.joined:
	default:
		close(h.joined)
	}
	return nil
}

func (holdClaims) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (holdClaims) ConsumeClaim(sess sarama.ConsumerGroupSession, _ sarama.ConsumerGroupClaim) error {
	<-sess.Context().Done()
	return nil
}
