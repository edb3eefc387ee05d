package consumers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// Probe checks that Kafka answers and knows the events topic (readiness).
type Probe struct {
	cfg   KafkaConfig
	topic string

	mu     sync.Mutex
	client sarama.Client
}

// NewProbe returns a Probe for topic; it connects on the first Check.
func NewProbe(cfg KafkaConfig, topic string) *Probe { return &Probe{cfg: cfg, topic: topic} }

// Check refreshes the topic's metadata from the brokers within ctx.
func (p *Probe) Check(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- p.check() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("no answer from %v: %w", p.cfg.Brokers, ctx.Err())
	}
}

func (p *Probe) check() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client == nil {
		sc := sarama.NewConfig()
		p.cfg.apply(sc)
		sc.Metadata.Retry.Max = 0
		sc.Net.DialTimeout = 2 * time.Second
		sc.Net.ReadTimeout = 2 * time.Second
		sc.Metadata.AllowAutoTopicCreation = false
		client, err := sarama.NewClient(p.cfg.Brokers, sc)
		if err != nil {
			return fmt.Errorf("connect to %v: %w", p.cfg.Brokers, err)
		}
		p.client = client
	}
	if err := p.client.RefreshMetadata(p.topic); err != nil {
		return fmt.Errorf("topic %s: %w", p.topic, err)
	}
	parts, err := p.client.Partitions(p.topic)
	if err != nil {
		return fmt.Errorf("topic %s: %w", p.topic, err)
	}
	if len(parts) == 0 {
		return errors.New("topic " + p.topic + " has no partitions")
	}
	return nil
}

// Close releases the probe's connections.
func (p *Probe) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client != nil {
		_ = p.client.Close()
		p.client = nil
	}
}
