package consumers

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/IBM/sarama"
)

// TopicProducer writes batches of messages to one topic and waits for the
// broker: a replay's dead letters, a redrive's events.
type TopicProducer struct {
	producer sarama.SyncProducer
}

// NewTopicProducer connects a producer for topic sized to the topic's
// max.message.bytes. When that cannot be read, the producer keeps Sarama's
// limit and log says so, naming what it sends (what: "dead letters").
func NewTopicProducer(kc KafkaConfig, topic string, log *slog.Logger, what string) (*TopicProducer, error) {
	pc, serr := topicProducerConfig(kc, topic)
	if serr != nil {
		log.Warn(what+" keep Sarama's size limit", slog.Int("max_message_bytes", pc.Producer.MaxMessageBytes), slog.Any("error", serr))
	}
	producer, err := sarama.NewSyncProducer(kc.Brokers, pc)
	if err != nil {
		return nil, fmt.Errorf("connect to kafka %v: %w", kc.Brokers, err)
	}
	return &TopicProducer{producer: producer}, nil
}

// SendMessages sends msgs and waits until the broker has them all.
func (p *TopicProducer) SendMessages(msgs []*sarama.ProducerMessage) error {
	if err := p.producer.SendMessages(msgs); err != nil {
		return firstProducerError(err)
	}
	return nil
}

// Close closes the producer.
func (p *TopicProducer) Close() error { return p.producer.Close() }

// firstProducerError is err with the cause of its first failed message
// (Sarama's ProducerErrors says only how many failed).
func firstProducerError(err error) error {
	var pes sarama.ProducerErrors
	if errors.As(err, &pes) && len(pes) > 0 && pes[0] != nil {
		return fmt.Errorf("%w (first: %w)", err, pes[0].Err)
	}
	return err
}

// topicProducerConfig is kc's producer configuration for writing to topic,
// with Producer.MaxMessageBytes set to the topic's max.message.bytes.
// Sarama's own limit (1 MiB) is below what a topic may accept: a message the
// events topic took could not be dead-lettered (its copy carries headers on
// top), nor a dead letter re-driven. When the topic's setting cannot be read
// (no DescribeConfigs permission), the configuration keeps Sarama's limit
// and the error says why. (The worker's dlqProducer goes further: it falls
// back to the broker's message.max.bytes and resizes after a failure.)
func topicProducerConfig(kc KafkaConfig, topic string) (*sarama.Config, error) {
	sc := kc.ProducerConfig()
	admin, err := sarama.NewClusterAdmin(kc.Brokers, kc.ClientConfig())
	if err != nil {
		return sc, fmt.Errorf("read max.message.bytes of %s: %w", topic, err)
	}
	defer func() { _ = admin.Close() }()
	entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic, ConfigNames: []string{"max.message.bytes"}})
	if err != nil {
		return sc, fmt.Errorf("read max.message.bytes of %s: %w", topic, err)
	}
	for _, e := range entries {
		if e.Name != "max.message.bytes" {
			continue
		}
		n, err := strconv.Atoi(e.Value)
		if err != nil || n <= 0 {
			return sc, fmt.Errorf("max.message.bytes of %s: %q is not a size", topic, e.Value)
		}
		sc.Producer.MaxMessageBytes = min(n, int(sarama.MaxRequestSize)-1)
		return sc, nil
	}
	return sc, fmt.Errorf("max.message.bytes of %s: not reported by the broker", topic)
}
