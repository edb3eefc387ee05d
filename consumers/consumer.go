package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/roomcast/roomcast/domain"
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
	// MaxInFlightBytes bounds the bytes of the messages held (default DefaultMaxInFlightBytes).
	MaxInFlightBytes int64
	// GroupInstanceID makes the consumer a static group member (KIP-345).
	GroupInstanceID string
	// CatchUpRatio: partitions whose backlog is below this share of the
	// largest are not fetched until the others caught up (see
	// CatchUpConfig; 0: the default 0.5, negative: off).
	CatchUpRatio float64
	// RetryMaxInterval caps the backoff between retries of a transient failure (default 5s).
	RetryMaxInterval time.Duration
	// MaxEventBytes: a longer value is dead-lettered as invalid without
	// being parsed (EVENT_MAX_BYTES; default 262144, negative: no limit).
	MaxEventBytes int
	// StallAfter is how long a retry loop or a dead letter that cannot be
	// published may last before it is reported as a stall (STALL_AFTER;
	// default 2m): Problems and roomcast_consumer_stalled.
	StallAfter time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// DefaultMaxEventBytes is the default of Config.MaxEventBytes.
const DefaultMaxEventBytes = domain.DefaultMaxValueBytes

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
	if c.MaxEventBytes == 0 {
		c.MaxEventBytes = DefaultMaxEventBytes
	}
	if c.StallAfter <= 0 {
		c.StallAfter = 2 * time.Minute
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

// Consumer consumes the events topic with a Watermill router over
// KeyedSubscriber and projects each event, acknowledging it only once the
// projection has committed; a room's events take effect in their order (see
// turn). Contract violations go to the dead-letter topic with their reason;
// transient failures are retried with backoff and never dead-lettered.
type Consumer struct {
	cfg         Config
	router      *message.Router
	subscriber  *KeyedSubscriber
	deadLetters *deadLetters
	producer    *dlqProducer
	retrying    *retrying
	stalls      *stallReport
	stop        context.CancelFunc // ends deadLetters.stopping
}

// New builds a Consumer that hands every event to projector.
func New(cfg Config, projector Projector) (*Consumer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := newWatermillLogger(cfg.Logger)
	maxBytes := max(cfg.MaxEventBytes, 0)
	subscriber, err := newSubscriber(cfg, maxBytes)
	if err != nil {
		return nil, fmt.Errorf("create kafka subscriber for %s: %w", cfg.Topic, err)
	}
	log := cfg.Logger.With(slog.String("topic", cfg.Topic))
	producer, err := newDLQProducer(cfg.Kafka, cfg.DLQTopic, log)
	if err != nil {
		_ = subscriber.Close()
		return nil, err
	}

	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: cfg.CloseTimeout}, logger)
	if err != nil {
		producer.Close()
		_ = subscriber.Close()
		return nil, err
	}
	metrics := newConsumerMetrics(cfg.Registerer)
	h := &handler{projector: projector, log: log, metrics: metrics, maxBytes: maxBytes}
	stopping, stop := context.WithCancel(context.Background())
	// Only permanent errors are dead-lettered: a valid event whose retries
	// of a transient error (Postgres restarting) ran out is nacked and comes
	// back instead.
	dead := newDeadLetters(producer, cfg.DLQTopic, metrics, log, stopping)
	tracked := newRetrying(log, cfg.RetryMaxInterval)
	router.AddConsumerHandler("project", cfg.Topic, subscriber, h.Handle)
	router.AddMiddleware(SettleKeyed, dead.Middleware, retryAfterFailure(transientRetry(cfg.RetryMaxInterval), nil), tracked.track, h.recoverPanics)
	c := &Consumer{cfg: cfg, router: router, subscriber: subscriber, deadLetters: dead, producer: producer, retrying: tracked, stop: stop}
	c.stalls = newStallReport(cfg.StallAfter, subscriber, tracked.stalls, dead.stalls)
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(newLagCollector(subscriber), c.stalls)
		cfg.Registerer.MustRegister(dead.collectors()...)
		cfg.Registerer.MustRegister(tracked.collectors()...)
	}
	return c, nil
}

// newSubscriber is the consumer's KeyedSubscriber: many messages of a
// partition in flight, MaxInFlightPerKey per key (room) at a time, so that
// the batcher can put many events in one transaction; events decoded as
// they are read, and settled by SettleKeyed.
func newSubscriber(cfg Config, maxBytes int) (*KeyedSubscriber, error) {
	initial := sarama.OffsetOldest
	if cfg.InitialOffset == "latest" {
		initial = sarama.OffsetNewest
	}
	return NewKeyedSubscriber(KeyedSubscriberConfig{
		Brokers:                 cfg.Kafka.Brokers,
		ConsumerGroup:           cfg.ConsumerGroup,
		Sarama:                  cfg.Kafka.ConsumerConfig(),
		InitialOffset:           initial,
		MaxInFlightPerPartition: cfg.MaxInFlightPerPartition,
		MaxInFlight:             cfg.MaxInFlight,
		MaxInFlightPerKey:       cfg.MaxInFlightPerKey,
		MaxInFlightBytes:        cfg.MaxInFlightBytes,
		GroupInstanceID:         cfg.GroupInstanceID,
		Prepare:                 DecodeAhead(maxBytes),
		SettledByMiddleware:     true, // SettleKeyed in New's middleware
		CatchUp:                 CatchUpConfig{Ratio: cfg.CatchUpRatio},
		Logger:                  cfg.Logger,
	})
}

// transientRetry retries an event that failed transiently (Postgres
// restarting) with backoff; a permanent failure is not retried.
func transientRetry(maxInterval time.Duration) middleware.Retry {
	return middleware.Retry{
		MaxRetries:          8,
		InitialInterval:     100 * time.Millisecond,
		MaxInterval:         maxInterval,
		Multiplier:          2,
		RandomizationFactor: 0.3,
		ShouldRetry:         func(p middleware.RetryParams) bool { return !isPermanent(p.Err) },
		// No logger: retrying logs each cause once, not each attempt.
	}
}

// Run consumes until ctx ends, then finishes the event in flight, commits
// offsets and closes. It returns nil after a clean stop.
func (c *Consumer) Run(ctx context.Context) error {
	defer c.producer.Close()
	// Dead letters waiting for the broker give up at once when the
	// consumer stops: their messages are delivered again later.
	defer context.AfterFunc(ctx, c.stop)()
	watchCtx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		c.watch(watchCtx)
	}()
	defer func() {
		stopWatch()
		<-watched
	}()
	if err := c.router.Run(ctx); err != nil {
		return fmt.Errorf("consume %s: %w", c.cfg.Topic, err)
	}
	return nil
}

// watch drops what was let go of from the waiting lists and logs their
// summaries while anything waits.
func (c *Consumer) watch(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.retrying.list.tick(now)
			c.deadLetters.list.tick(now)
		}
	}
}

// Running is closed once the consumer is running.
func (c *Consumer) Running() <-chan struct{} { return c.router.Running() }

// IsRunning reports whether the router is running (and not closed).
func (c *Consumer) IsRunning() bool { return c.router.IsRunning() && !c.router.IsClosed() }

// Stalls returns the conditions that keep events from progressing now,
// whatever their age: the subscriber's (partition, unassigned) and the
// consumer's own (retry, dead_letter).
func (c *Consumer) Stalls(now time.Time) []Stall { return c.stalls.all(now) }

// Problems returns one short line per stall that has lasted longer than
// StallAfter (for /readyz), or nothing.
func (c *Consumer) Problems() []string { return c.stalls.problems(time.Now()) }
