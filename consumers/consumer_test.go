package consumers_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/roomcast/roomcast/consumers"
	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/testsupport"
	"github.com/roomcast/roomcast/projections"
)

func TestMain(m *testing.M) { testsupport.Main(m) }

// panickyProjector stands in for a bug: it panics on one message id and
// records the others.
type panickyProjector struct {
	mu      sync.Mutex
	panicOn string
	seen    []string
}

func (p *panickyProjector) Project(_ context.Context, env domain.Envelope, _ projections.Origin) (projections.Outcome, error) {
	if env.Event.(domain.MessageCreated).MessageID == p.panicOn {
		panic("bug in a projection")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen = append(p.seen, env.ID)
	return projections.Applied, nil
}

func (p *panickyProjector) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.seen)
}

// A panic while handling one event dead-letters that event with a one-line
// reason and the partition goes on: no crash, no endless redelivery.
func TestPanicIsDeadLetteredAndTheStreamGoesOn(t *testing.T) {
	k := testsupport.Kafka(t, map[string]int32{"chat.events": 1, "chat.events.dlq": 1})
	topic, dlq := k.Topics["chat.events"], k.Topics["chat.events.dlq"]
	projector := &panickyProjector{panicOn: "m-boom"}
	c, err := consumers.New(consumers.Config{
		Kafka: consumers.KafkaConfig{Brokers: k.Brokers}, Topic: topic, DLQTopic: dlq, ConsumerGroup: "test",
	}, projector)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("consumer stopped with %v", err)
		}
	})

	cfg := consumers.KafkaConfig{Brokers: k.Brokers}
	producer, err := sarama.NewSyncProducer(k.Brokers, cfg.ProducerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	boom := chattest.MessageCreated("room-1", "m-boom", "x")
	for _, e := range []*chattest.Event{
		chattest.MessageCreated("room-1", "m-1", "before"), boom, chattest.MessageCreated("room-1", "m-2", "after"),
	} {
		if _, _, err := producer.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(e.Key()), Value: sarama.ByteEncoder(e.JSON())}); err != nil {
			t.Fatal(err)
		}
	}

	deadline := time.Now().Add(30 * time.Second)
	for projector.count() < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := projector.count(); n != 2 {
		t.Fatalf("projected %d events, want the 2 around the panicking one", n)
	}
	msg := readOne(t, k.Brokers, dlq)
	if string(msg.Value) != string(boom.JSON()) || string(msg.Key) != "room-1" {
		t.Errorf("dead letter = key %q value %q, want the original", msg.Key, msg.Value)
	}
	var reason string
	for _, h := range msg.Headers {
		if string(h.Key) == "reason_poisoned" {
			reason = string(h.Value)
		}
	}
	if !strings.Contains(reason, "panic while handling the event: bug in a projection") || strings.Contains(reason, "\n") {
		t.Errorf("reason_poisoned = %q, want a one-line panic reason", reason)
	}
}

func readOne(t *testing.T, brokers []string, topic string) *sarama.ConsumerMessage {
	t.Helper()
	consumer, err := sarama.NewConsumer(brokers, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	pc, err := consumer.ConsumePartition(topic, 0, sarama.OffsetOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	select {
	case msg := <-pc.Messages():
		return msg
	case <-time.After(30 * time.Second):
		t.Fatalf("nothing in %s", topic)
		return nil
	}
}
