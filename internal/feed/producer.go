package feed

import (
	"bytes"
	"fmt"
	"time"

	"github.com/IBM/sarama"

	"github.com/roomcast/roomcast/consumers"
)

// batchSize is how many lines a Producer sends in one request.
const batchSize = 500

// Producer sends event lines to a topic in batches, partitioned with murmur2
// like the Java client (the key is what Key returns).
type Producer struct {
	producer sarama.SyncProducer
	topic    string
	pending  []*sarama.ProducerMessage
	sent     int
}

// NewProducer connects to the brokers of kc to produce to topic.
func NewProducer(kc consumers.KafkaConfig, topic string) (*Producer, error) {
	producer, err := sarama.NewSyncProducer(kc.Brokers, kc.ProducerConfig())
	if err != nil {
		return nil, fmt.Errorf("connect to kafka %v: %w", kc.Brokers, err)
	}
	return &Producer{producer: producer, topic: topic}, nil
}

// Add queues line under key ("": no key), and sends the batch once it is full.
func (p *Producer) Add(key string, line []byte) error {
	msg := &sarama.ProducerMessage{Topic: p.topic, Value: sarama.ByteEncoder(bytes.Clone(line)), Timestamp: time.Now()}
	if key != "" {
		msg.Key = sarama.StringEncoder(key)
	}
	p.pending = append(p.pending, msg)
	if len(p.pending) == batchSize {
		return p.Flush()
	}
	return nil
}

// Flush sends the lines queued.
func (p *Producer) Flush() error {
	if len(p.pending) == 0 {
		return nil
	}
	if err := p.producer.SendMessages(p.pending); err != nil {
		return fmt.Errorf("produce to %s: %w", p.topic, err)
	}
	p.sent += len(p.pending)
	p.pending = p.pending[:0]
	return nil
}

// Sent is how many lines the topic took.
func (p *Producer) Sent() int { return p.sent }

// Close closes the connection; lines queued and not flushed are not sent.
func (p *Producer) Close() error { return p.producer.Close() }
