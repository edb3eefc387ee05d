package consumers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/IBM/sarama"
)

// defaultMaxMessageBytes is Kafka's default message.max.bytes (1 MiB plus
// the 12 bytes of a log entry's overhead), used when the cluster does not
// say.
const defaultMaxMessageBytes = 1048588

// dlqProducer publishes dead letters. Its Producer.MaxMessageBytes is the
// dead-letter topic's max.message.bytes as the cluster reports it (else the
// broker's message.max.bytes, else Kafka's default): Sarama's own default
// of 1 MiB refuses, before sending, a dead letter of a value the events
// topic accepted, once the dead-lettering headers are added, even when the
// dead-letter topic is configured to take it.
type dlqProducer struct {
	brokers []string
	config  *sarama.Config // KafkaConfig.ProducerConfig, without the size
	topic   string
	log     *slog.Logger

	mu          sync.Mutex
	producer    sarama.SyncProducer
	limit       int
	lastRefresh time.Time
	retired     []sarama.SyncProducer // replaced after a limit change; closed with the rest
	closed      bool
	sends       sync.WaitGroup // SendMessage calls running: a producer is closed after them
}

// newDLQProducer asks the cluster for the dead-letter topic's limit and
// opens the producer; it fails, as a producer would, when no broker answers.
func newDLQProducer(kc KafkaConfig, topic string, log *slog.Logger) (*dlqProducer, error) {
	cfg := kc.ProducerConfig()
	// Attempts are retried with roomcast's own backoff (deadLetters): a
	// missing topic should fail an attempt in well under a second, not
	// after Sarama's ten metadata retries.
	cfg.Metadata.Retry.Max = 2
	cfg.Metadata.AllowAutoTopicCreation = true // as Watermill's publisher did: a broker that auto-creates topics creates the DLQ
	p := &dlqProducer{brokers: kc.Brokers, config: cfg, topic: topic, log: log}
	p.limit = p.brokerLimit()
	producer, err := p.open(p.limit)
	if err != nil {
		return nil, err
	}
	p.producer = producer
	return p, nil
}

// brokerLimit is the largest record batch the dead-letter topic accepts.
func (p *dlqProducer) brokerLimit() int {
	cfg := *p.config
	cfg.Admin.Timeout = 10 * time.Second
	admin, err := sarama.NewClusterAdmin(p.brokers, &cfg)
	if err != nil {
		p.log.Warn("cannot ask Kafka for the dead-letter topic's max.message.bytes; assuming Kafka's default",
			slog.String("topic", p.topic), slog.Int("max_message_bytes", defaultMaxMessageBytes), slog.String("cause", publishFailureCause(err)))
		return defaultMaxMessageBytes
	}
	defer func() { _ = admin.Close() }()
	n, topicErr := describeInt(admin, sarama.TopicResource, p.topic, "max.message.bytes")
	if topicErr == nil {
		return n
	}
	// The topic may not exist yet, or describing it may not be allowed: the
	// broker's message.max.bytes is the topics' default.
	brokers, _, err := admin.DescribeCluster()
	for _, b := range brokers {
		if n, err = describeInt(admin, sarama.BrokerResource, strconv.Itoa(int(b.ID())), "message.max.bytes"); err == nil {
			return n
		}
	}
	p.log.Warn("cannot ask Kafka for the dead-letter topic's max.message.bytes; assuming Kafka's default",
		slog.String("topic", p.topic), slog.Int("max_message_bytes", defaultMaxMessageBytes), slog.String("cause", publishFailureCause(topicErr)))
	return defaultMaxMessageBytes
}

// describeInt reads one integer setting of a topic or broker.
func describeInt(admin sarama.ClusterAdmin, typ sarama.ConfigResourceType, name, key string) (int, error) {
	entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: typ, Name: name, ConfigNames: []string{key}})
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		if e.Name == key {
			n, err := strconv.Atoi(e.Value)
			if err != nil || n <= 0 {
				return 0, fmt.Errorf("%s %q is not a positive number", key, e.Value)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("%s not reported", key)
}

func (p *dlqProducer) open(limit int) (sarama.SyncProducer, error) {
	cfg := *p.config
	cfg.Producer.MaxMessageBytes = min(limit, int(sarama.MaxRequestSize)-1)
	producer, err := sarama.NewSyncProducer(p.brokers, &cfg)
	if err != nil {
		return nil, fmt.Errorf("create the dead-letter producer for %s: %w", p.topic, err)
	}
	return producer, nil
}

// send publishes pm and waits for the broker's acknowledgement, or until
// ctx ends (the send may still complete then: the dead letter may be
// published twice, never lost).
func (p *dlqProducer) send(ctx context.Context, pm *sarama.ProducerMessage) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return sarama.ErrClosedClient
	}
	producer := p.producer
	p.sends.Add(1)
	p.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		defer p.sends.Done()
		_, _, err := producer.SendMessage(pm)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// refresh reads the topic's limit again after a failure that a changed
// topic may cure (created since, or given a larger max.message.bytes), at
// most once a second, and reopens the producer when the limit changed.
func (p *dlqProducer) refresh() {
	p.mu.Lock()
	if time.Since(p.lastRefresh) < time.Second {
		p.mu.Unlock()
		return
	}
	p.lastRefresh = time.Now()
	p.mu.Unlock()
	limit := p.brokerLimit()
	p.mu.Lock()
	defer p.mu.Unlock()
	if limit == p.limit || p.closed {
		return
	}
	producer, err := p.open(limit)
	if err != nil {
		return // the next attempt fails as unavailable and comes back here
	}
	p.log.Info("dead-letter producer resized to the topic's max.message.bytes", slog.String("topic", p.topic),
		slog.Int("from", p.limit), slog.Int("to", limit))
	p.retired = append(p.retired, p.producer) // sends in flight on it finish
	p.producer, p.limit = producer, limit
}

// Close closes the producers once the sends still running (given up by
// their handlers) end, waiting for that a few seconds at most: a send to a
// broker that does not answer may take Sarama's whole retry budget.
func (p *dlqProducer) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	producers := append(p.retired, p.producer)
	p.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.sends.Wait() // a producer's Input must not be closed under a send
		for _, pr := range producers {
			if err := pr.Close(); err != nil {
				p.log.Debug("close the dead-letter producer", slog.Any("err", err))
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}

// publishFailureCauses are the values of roomcast_dead_letter_failures_total's cause.
var publishFailureCauses = []string{"too_large", "missing_topic", "not_authorized", "unavailable", "other"}

// publishFailureCause sorts a failed publish into publishFailureCauses.
func publishFailureCause(err error) string {
	var cfgErr sarama.ConfigurationError
	var kerr sarama.KError
	var ne net.Error
	var errno syscall.Errno
	switch {
	case errors.Is(err, sarama.ErrMessageSizeTooLarge),
		errors.As(err, &cfgErr) && strings.Contains(string(cfgErr), "MaxMessageBytes"):
		return "too_large"
	case errors.Is(err, sarama.ErrUnknownTopicOrPartition), errors.Is(err, sarama.ErrInvalidTopic):
		return "missing_topic"
	case errors.Is(err, sarama.ErrTopicAuthorizationFailed), errors.Is(err, sarama.ErrClusterAuthorizationFailed),
		errors.Is(err, sarama.ErrSASLAuthenticationFailed), errors.Is(err, sarama.ErrTransactionalIDAuthorizationFailed):
		return "not_authorized"
	case errors.As(err, &kerr), errors.Is(err, sarama.ErrOutOfBrokers), errors.Is(err, sarama.ErrNotConnected),
		errors.Is(err, sarama.ErrClosedClient), errors.Is(err, sarama.ErrShuttingDown), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne), errors.As(err, &errno), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		// Any other broker error code: leader elections, timeouts, too few
		// in-sync replicas; they pass.
		return "unavailable"
	}
	return "other"
}

// publishFailureText says in a few words why dead letters to topic wait.
func publishFailureText(cause, topic string) string {
	switch cause {
	case "too_large":
		return "larger than dead-letter topic " + topic + " accepts (max.message.bytes)"
	case "missing_topic":
		return "dead-letter topic " + topic + " does not exist"
	case "not_authorized":
		return "not authorized to write to dead-letter topic " + topic
	case "unavailable":
		return "kafka unavailable for dead-letter topic " + topic
	}
	return "kafka refused the dead letter for " + topic
}
