package main

import (
	"fmt"
	"strconv"

	"github.com/IBM/sarama"

	"github.com/roomcast/roomcast/consumers"
)

// topicProducerConfig is kc's producer configuration for writing to topic,
// with Producer.MaxMessageBytes set to the topic's max.message.bytes.
// Sarama's own limit (1 MiB) is below what a topic may accept: a message the
// events topic took could not be dead-lettered (its copy carries headers on
// top), nor a dead letter re-driven. When the topic's setting cannot be read
// (no DescribeConfigs permission), the configuration keeps Sarama's limit
// and the error says why.
//
// Note for the coordinator: the worker's dead-letter producer needs the same
// sizing; one shared helper should replace this and the worker's.
func topicProducerConfig(kc consumers.KafkaConfig, topic string) (*sarama.Config, error) {
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
