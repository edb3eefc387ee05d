package consumers

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
)

// ReadDeadLetters reads the whole dead-letter topic, oldest first, up to
// its high-water mark at start, with a group-less consumer.
func ReadDeadLetters(ctx context.Context, kc KafkaConfig, dlqTopic string) ([]DeadLetter, error) {
	hist, err := OpenHistory(HistoryConfig{Kafka: kc, Topic: dlqTopic, IdleTimeout: 2 * time.Second})
	if err != nil {
		return nil, err
	}
	defer func() { _ = hist.Close() }()
	var out []DeadLetter
	err = hist.Read(ctx, func(msgs []*sarama.ConsumerMessage) error {
		for _, m := range msgs {
			out = append(out, ReadDeadLetter(m))
		}
		return nil
	})
	return out, err
}

// Redrive sends dls back to the events topic (RedriveMessage) and waits
// until the broker has them all.
func Redrive(kc KafkaConfig, topic string, dls []DeadLetter, log *slog.Logger) error {
	send := make([]*sarama.ProducerMessage, 0, len(dls))
	for _, d := range dls {
		send = append(send, RedriveMessage(topic, d))
	}
	producer, err := NewTopicProducer(kc, topic, log, "re-driven messages")
	if err != nil {
		return err
	}
	defer func() { _ = producer.Close() }()
	if err := producer.SendMessages(send); err != nil {
		return fmt.Errorf("redrive %d dead letters to %s: %w", len(send), topic, err)
	}
	return nil
}
