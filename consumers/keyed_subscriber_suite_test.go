package consumers_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"

	"github.com/roomcast/roomcast/consumers"
	"github.com/roomcast/roomcast/internal/testsupport"
)

// suitePartitions is how many partitions each topic of the suite has: enough
// for the suite's keys to spread, and for its groups of up to ten members to
// share them.
const suitePartitions = 8

// TestKeyedSubscriberSuite runs Watermill's own behaviour suite against
// KeyedSubscriber, fed by watermill-kafka's publisher, on the in-process
// broker (or the cluster KAFKA_BROKERS names).
//
// The Features say what KeyedSubscriber promises:
//   - ConsumerGroups, Persistent: it is a Kafka consumer group; messages
//     outlive the subscriber, and a member that closes commits what was acked.
//   - GuaranteedOrder: per key, which is all the suite checks. Its ordering
//     test groups messages by payload (16 kinds), and its no-ack test sends
//     two identical payloads, so the publisher here keys each message by its
//     payload (suiteMarshaler): messages of one kind then share a key and a
//     partition, and must arrive in publishing order, one at a time (the
//     default MaxInFlightPerKey 1), across ten members of one group joining
//     while messages flow. Messages of different keys may be out together.
//   - ExactlyOnceDelivery false: a message is delivered again when a
//     partition moves before its ack was committed (at least once).
//   - NewSubscriberReceivesOldMessages false: a new subscriber is a new
//     member of the test's group, so it gets only what the group has not
//     consumed yet. KeyedSubscriber has no group-less mode (watermill-kafka's
//     subscriber sets this only without a consumer group).
//   - RestartServiceCommand nil: TestReconnect is skipped. It restarts the
//     broker with a command, and the in-process broker has none to run.
//
// The suite runs at its full sizes (-short shrinks them): 5,000 messages over
// 50 members of one group, 10,000 through one key, and so on. It takes about
// 15 s with -race on two cores; the group's rebalances, as each member joins,
// are most of it.
func TestKeyedSubscriberSuite(t *testing.T) {
	k := testsupport.Kafka(t, nil)
	topics := testsupport.NewKafkaTopics(t, k.Brokers, suitePartitions)
	features := tests.Features{
		ConsumerGroups:                   true,
		ExactlyOnceDelivery:              false,
		GuaranteedOrder:                  true,
		Persistent:                       true,
		RequireSingleInstance:            false,
		NewSubscriberReceivesOldMessages: false,
	}
	tests.TestPubSub(t, features,
		func(t *testing.T) (message.Publisher, message.Subscriber) {
			// One group per suite test, shared by the subscribers the test
			// makes: later ones continue where earlier ones committed.
			return newSuitePubSub(t, k.Brokers, topics, "roomcast-suite."+strings.ReplaceAll(t.Name(), "/", "."))
		},
		func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
			return newSuitePubSub(t, k.Brokers, topics, group)
		},
	)
}

// suiteSubscriber is a KeyedSubscriber that creates the suite's topics when
// the suite asks (message.SubscribeInitializer), before it publishes to them.
type suiteSubscriber struct {
	*consumers.KeyedSubscriber
	topics *testsupport.KafkaTopics
}

func (s suiteSubscriber) SubscribeInitialize(topic string) error { return s.topics.Create(topic) }

// suiteMarshaler keys each message by its payload (see TestKeyedSubscriberSuite).
var suiteMarshaler = kafka.NewWithPartitioningMarshaler(func(_ string, msg *message.Message) (string, error) {
	return string(msg.Payload), nil
})

func newSuitePubSub(t *testing.T, brokers []string, topics *testsupport.KafkaTopics, group string) (message.Publisher, message.Subscriber) {
	t.Helper()
	pub, err := kafka.NewPublisher(kafka.PublisherConfig{
		Brokers:   brokers,
		Marshaler: suiteMarshaler,
		// roomcast's producer settings: murmur2 on the key, as its producers do.
		OverwriteSaramaConfig: consumers.KafkaConfig{Brokers: brokers, ClientID: "roomcast-suite"}.ProducerConfig(),
	}, watermill.NopLogger{})
	if err != nil {
		t.Fatalf("watermill-kafka publisher: %v", err)
	}
	sc := consumers.KafkaConfig{ClientID: "roomcast-suite"}.ConsumerConfig()
	sc.Consumer.Group.Heartbeat.Interval = 100 * time.Millisecond // notice rebalances quickly
	sub, err := consumers.NewKeyedSubscriber(consumers.KeyedSubscriberConfig{
		Brokers:       brokers,
		ConsumerGroup: group,
		Sarama:        sc,
		// The suite gives a closed subscriber's unacked messages 15 s to see
		// their contexts end (TestMessageCtx); the default 10 s is too near.
		DrainTimeout: 2 * time.Second,
		// The suite nacks one message 100 times in a row (TestContinueAfterErrors,
		// its messages all sharing one key); at the default 100ms that test
		// alone would wait 30 s.
		NackResendSleep: 10 * time.Millisecond,
		Logger:          slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatalf("keyed subscriber: %v", err)
	}
	// Some suite tests leave subscribers open (TestPublishSubscribeInOrder
	// closes its members before subscribing them); close every one.
	t.Cleanup(func() {
		_ = sub.Close()
		_ = pub.Close()
	})
	return pub, suiteSubscriber{KeyedSubscriber: sub, topics: topics}
}
