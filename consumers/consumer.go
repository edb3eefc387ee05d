package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/prometheus/client_golang/prometheus"
)

// Config is what a Consumer reads and where it dead-letters.
type Config struct {
	Kafka         KafkaConfig
	Topic         string // default "chat.events"
	DLQTopic      string // default "chat.events.dlq"
	ConsumerGroup string // default "roomcast"
	// InitialOffset is where a new consumer group starts: "earliest" (default) or "latest".
	InitialOffset string
	// CloseTimeout bounds how long stopping waits for the handler in flight (default 20s).
	CloseTimeout time.Duration
	// MaxInFlightPerPartition and MaxInFlight bound the messages handed out
	// before acknowledgement (KeyedSubscriberConfig's defaults when zero).
	MaxInFlightPerPartition, MaxInFlight int
	// MaxInFlightPerKey is how many messages of one key (room) are handed out
	// at once (default 1). Above 1 the Projector must keep each key's order
	// from the turns in the messages' contexts: Batcher does.
	MaxInFlightPerKey int
	// MaxInFlightBytes bounds the bytes of the messages held (default 64 MiB).
	MaxInFlightBytes int64
	// GroupInstanceID makes the consumer a static group member (KIP-345).
	GroupInstanceID string
	// CatchUpRatio: partitions whose backlog is below this share of the
	// largest are not fetched until the others caught up (see
	// CatchUpConfig; 0: the default 0.5, negative: off).
	CatchUpRatio float64
	// RetryMaxInterval caps the backoff between retries of a transient failure (default 5s).
	RetryMaxInterval time.Duration
	Logger           *slog.Logger
	Registerer       prometheus.Registerer
}

func (c *Config) setDefaults() {
	if c.Topic == "" {
		c.Topic = "chat.events"
	}
	if c.DLQTopic == "" {
		c.DLQTopic = "chat.events.dlq"
	}
	if c.ConsumerGroup == "" {
		c.ConsumerGroup = "roomcast"
	}
	if c.InitialOffset == "" {
		c.InitialOffset = "earliest"
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = 20 * time.Second
	}
	if c.RetryMaxInterval <= 0 {
		c.RetryMaxInterval = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem of the configuration at once, naming the
// environment variable that sets it.
func (c Config) Validate() error {
	var errs []error
	if err := c.Kafka.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.InitialOffset != "" && c.InitialOffset != "earliest" && c.InitialOffset != "latest" {
		errs = append(errs, fmt.Errorf("KAFKA_INITIAL_OFFSET: %q is not earliest or latest", c.InitialOffset))
	}
	if c.Topic != "" && c.Topic == c.DLQTopic {
		errs = append(errs, errors.New("KAFKA_DLQ_TOPIC: must differ from KAFKA_TOPIC"))
	}
	return errors.Join(errs...)
}

// Consumer consumes the events topic with a Watermill router and projects
// each event. One handler runs per assigned partition, so a partition's (and
// so a room's) events are projected in order.
type Consumer struct {
	cfg       Config
	router    *message.Router
	publisher message.Publisher
}

// New builds a Consumer that hands every event to projector.
func New(cfg Config, projector Projector) (*Consumer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := newWatermillLogger(cfg.Logger)

	subConfig := cfg.Kafka.ConsumerConfig()
	initial := sarama.OffsetOldest
	if cfg.InitialOffset == "latest" {
		initial = sarama.OffsetNewest
	}
	// Many messages of a partition in flight, MaxInFlightPerKey per key
	// (room) at a time, so that the batcher can put many events in one
	// transaction.
	subscriber, err := NewKeyedSubscriber(KeyedSubscriberConfig{
		Brokers:                 cfg.Kafka.Brokers,
		ConsumerGroup:           cfg.ConsumerGroup,
		Sarama:                  subConfig,
		InitialOffset:           initial,
		MaxInFlightPerPartition: cfg.MaxInFlightPerPartition,
		MaxInFlight:             cfg.MaxInFlight,
		MaxInFlightPerKey:       cfg.MaxInFlightPerKey,
		MaxInFlightBytes:        cfg.MaxInFlightBytes,
		GroupInstanceID:         cfg.GroupInstanceID,
		Prepare:                 DecodeAhead,
		SettledByMiddleware:     true, // SettleKeyed below
		CatchUp:                 CatchUpConfig{Ratio: cfg.CatchUpRatio},
		Logger:                  cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("create kafka subscriber for %s: %w", cfg.Topic, err)
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(newLagCollector(subscriber))
	}
	publisher, err := kafka.NewPublisher(kafka.PublisherConfig{
		Brokers:               cfg.Kafka.Brokers,
		Marshaler:             keyPreservingMarshaler{},
		OverwriteSaramaConfig: cfg.Kafka.ProducerConfig(),
	}, logger)
	if err != nil {
		_ = subscriber.Close()
		return nil, fmt.Errorf("create kafka publisher for %s: %w", cfg.DLQTopic, err)
	}

	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: cfg.CloseTimeout}, logger)
	if err != nil {
		return nil, err
	}
	h := &handler{projector: projector, log: cfg.Logger.With(slog.String("topic", cfg.Topic)), metrics: newConsumerMetrics(cfg.Registerer)}
	// Only permanent errors are dead-lettered: Watermill's plain PoisonQueue
	// would also dead-letter a valid event once retries of a transient error
	// (Postgres restarting) ran out. Those are nacked and come back instead.
	poison, err := middleware.PoisonQueueWithFilter(publisher, cfg.DLQTopic, isPermanent)
	if err != nil {
		return nil, err
	}
	retry := middleware.Retry{
		MaxRetries:          8,
		InitialInterval:     100 * time.Millisecond,
		MaxInterval:         cfg.RetryMaxInterval,
		Multiplier:          2,
		RandomizationFactor: 0.3,
		ShouldRetry:         func(p middleware.RetryParams) bool { return !isPermanent(p.Err) },
		Logger:              logger, // logs each retry with its cause
	}
	router.AddConsumerHandler("project", cfg.Topic, subscriber, h.Handle)
	router.AddMiddleware(SettleKeyed, poison, retryAfterFailure(retry, logger), h.recoverPanics)
	return &Consumer{cfg: cfg, router: router, publisher: publisher}, nil
}

// Run consumes until ctx ends, then finishes the event in flight, commits
// offsets and closes. It returns nil after a clean stop.
func (c *Consumer) Run(ctx context.Context) error {
	defer func() { _ = c.publisher.Close() }()
	if err := c.router.Run(ctx); err != nil {
		return fmt.Errorf("consume %s: %w", c.cfg.Topic, err)
	}
	return nil
}

// Running is closed once the consumer is running.
func (c *Consumer) Running() <-chan struct{} { return c.router.Running() }

// IsRunning reports whether the router is running (and not closed).
func (c *Consumer) IsRunning() bool { return c.router.IsRunning() && !c.router.IsClosed() }
