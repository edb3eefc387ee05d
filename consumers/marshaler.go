package consumers

import (
	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
)

// keyPreservingMarshaler writes a consumed message back to Kafka (to the
// dead-letter topic) with its original key, taken from the message's context
// where the subscriber put it, and its original value and headers.
type keyPreservingMarshaler struct {
	kafka.DefaultMarshaler
}

func (m keyPreservingMarshaler) Marshal(topic string, msg *message.Message) (*sarama.ProducerMessage, error) {
	pm, err := m.DefaultMarshaler.Marshal(topic, msg)
	if err != nil {
		return nil, err
	}
	if key, ok := kafka.MessageKeyFromCtx(msg.Context()); ok && key != nil {
		pm.Key = sarama.ByteEncoder(key)
	}
	return pm, nil
}
