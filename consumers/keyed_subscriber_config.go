package consumers

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
)

// DefaultMaxInFlightBytes is the default of
// KeyedSubscriberConfig.MaxInFlightBytes (KAFKA_MAX_IN_FLIGHT_BYTES). A
// held message costs about four times its size on its way through `roomcast
// run` (the Kafka value, the decoded event's data, its canonical form and
// the COPY rows of its batch), so that with large messages 32 MiB held keeps
// the worker's heap within its default GOMEMLIMIT of 256 MiB; above it the
// collector runs past the limit. Small messages never come near it: 5,000
// held chat events are ~2.5 MB.
const DefaultMaxInFlightBytes = 32 << 20

// KeyedSubscriberConfig configures a KeyedSubscriber. Zero values mean the
// defaults given with each field.
type KeyedSubscriberConfig struct {
	Brokers       []string
	ConsumerGroup string
	// Sarama is the base configuration (client id, SASL, TLS, rebalance
	// strategy, timeouts, buffers); it is copied, not modified. The
	// subscriber sets Consumer.Offsets.Initial from InitialOffset,
	// Consumer.Group.InstanceId from GroupInstanceID, forces auto-commit on
	// and Consumer.Return.Errors (errors are logged), and dials through
	// Net.Proxy (wrapping the configured dialer) so that a stop can cut a
	// request that would hold it. Its Consumer.Group.Rebalance.Timeout must
	// be below Net.ReadTimeout (see KafkaConfig.ConsumerConfig). Default:
	// KafkaConfig{}.ConsumerConfig() (client id "roomcast").
	Sarama *sarama.Config
	// InitialOffset is where a group without a committed offset starts:
	// sarama.OffsetOldest (default) or sarama.OffsetNewest.
	InitialOffset int64
	// MaxInFlightPerPartition caps the messages of one partition held between
	// being read from Kafka and their offset becoming committable (all earlier
	// ones acked), handed out or not. It must be below MaxInFlight, so that a
	// partition whose head never completes (every later message of it is
	// held until it does) cannot take every slot from the other partitions
	// (default 1000, or half of MaxInFlight if that is less).
	MaxInFlightPerPartition int
	// MaxInFlight caps the same over all partitions and subscriptions of the
	// subscriber (default 10000).
	MaxInFlight int
	// MaxInFlightBytes caps the bytes (key, value and headers) of the
	// messages held, over all partitions, as MaxInFlight caps their count
	// (default DefaultMaxInFlightBytes). A partition holds at most half of it, and a message
	// larger than half of it is charged half, so that it still gets in and
	// never waits for good (see byteBudget).
	MaxInFlightBytes int64
	// MaxInFlightPerKey is how many messages of one key are handed out at
	// once (default 1: the next one only after the previous one was acked).
	// Above 1 the handler must keep the key's order itself, as Batcher does
	// with the turn each message carries in its context.
	MaxInFlightPerKey int
	// NackResendSleep is how long a nacked message waits before it is handed
	// out again (default 100ms; negative: at once).
	NackResendSleep time.Duration
	// DrainTimeout bounds how long a revoked partition (rebalance, Close, ctx
	// end) waits for its handed-out messages to be acked or nacked, so that
	// their offsets are marked before the session ends (default 10s; must be
	// below Sarama's Consumer.Group.Rebalance.Timeout). When it passes, the
	// contexts of the messages still out are cancelled and their acks ignored.
	DrainTimeout time.Duration
	// Prepare, if set, is called with each message's payload when it is
	// read, on its partition's goroutine, and its result travels in the
	// message's context (see Prepared): work done there is done once per
	// message, however often the message is redelivered, and not on the
	// router's fresh per-message goroutines. roomcast decodes events there
	// (DecodeAhead): on those goroutines the decoder's deep stack would make
	// each of them grow, copying its stack.
	Prepare func(payload []byte) any
	// SettledByMiddleware says that every handler of the subscription runs
	// inside SettleKeyed, outermost: the outcome of each message is then
	// taken from there instead of from a goroutine per message waiting for
	// its Ack or Nack, costly under a backlog. A message not
	// settled that way is never acknowledged here.
	SettledByMiddleware bool
	// CatchUp evens out how the partitions drain a backlog (see CatchUpConfig).
	CatchUp CatchUpConfig
	// GroupInstanceID, if set, makes each subscription a static member of
	// the group (KIP-345, Sarama's Consumer.Group.InstanceId): a member
	// that restarts with the same id takes its partitions back at once,
	// without waiting for the old member's session to time out. A graceful
	// stop leaves the group explicitly, so that the partitions move at once.
	// Only one subscription at a time may use it.
	GroupInstanceID string
	// GroupLagInterval is how often the group's lag over the topic is read
	// from the brokers (committed offsets and high-water marks), for Stalls
	// and roomcast_kafka_group_lag (default 15s; negative: never).
	GroupLagInterval time.Duration
	Logger           *slog.Logger
}

func (c *KeyedSubscriberConfig) setDefaults() {
	if c.Sarama == nil {
		c.Sarama = KafkaConfig{}.ConsumerConfig()
	}
	if c.InitialOffset == 0 {
		c.InitialOffset = sarama.OffsetOldest
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 10000
	}
	if c.MaxInFlightPerPartition == 0 {
		c.MaxInFlightPerPartition = max(1, min(1000, c.MaxInFlight/2))
	}
	if c.MaxInFlightBytes == 0 {
		c.MaxInFlightBytes = DefaultMaxInFlightBytes
	}
	if c.GroupLagInterval == 0 {
		c.GroupLagInterval = 15 * time.Second
	}
	if c.MaxInFlightPerKey == 0 {
		c.MaxInFlightPerKey = 1
	}
	if c.NackResendSleep == 0 {
		c.NackResendSleep = 100 * time.Millisecond
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.CatchUp.setDefaults()
}

// Validate reports every problem of the configuration at once. Zero values
// are valid: they mean the defaults.
func (c KeyedSubscriberConfig) Validate() error {
	c.setDefaults() // c is a copy
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("keyed subscriber: no brokers"))
	}
	if c.ConsumerGroup == "" {
		errs = append(errs, errors.New("keyed subscriber: no consumer group"))
	}
	if c.InitialOffset != sarama.OffsetOldest && c.InitialOffset != sarama.OffsetNewest {
		errs = append(errs, fmt.Errorf("keyed subscriber: initial offset %d is neither sarama.OffsetOldest nor sarama.OffsetNewest", c.InitialOffset))
	}
	if c.MaxInFlightPerPartition < 0 {
		errs = append(errs, fmt.Errorf("keyed subscriber: MaxInFlightPerPartition %d is negative", c.MaxInFlightPerPartition))
	}
	if c.MaxInFlight < 0 {
		errs = append(errs, fmt.Errorf("keyed subscriber: MaxInFlight %d is negative", c.MaxInFlight))
	}
	if c.MaxInFlight > 0 && c.MaxInFlightPerPartition >= c.MaxInFlight {
		errs = append(errs, fmt.Errorf("keyed subscriber: MaxInFlightPerPartition %d must be below MaxInFlight %d, so that one partition cannot hold every slot",
			c.MaxInFlightPerPartition, c.MaxInFlight))
	}
	if c.MaxInFlightBytes < 0 {
		errs = append(errs, fmt.Errorf("keyed subscriber: MaxInFlightBytes %d is negative", c.MaxInFlightBytes))
	}
	if c.MaxInFlightPerKey < 0 {
		errs = append(errs, fmt.Errorf("keyed subscriber: MaxInFlightPerKey %d is negative", c.MaxInFlightPerKey))
	}
	if c.DrainTimeout < 0 {
		errs = append(errs, fmt.Errorf("keyed subscriber: DrainTimeout %v is negative", c.DrainTimeout))
	}
	sc := *c.Sarama
	if c.GroupInstanceID != "" {
		sc.Consumer.Group.InstanceId = c.GroupInstanceID
	}
	if err := sc.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("keyed subscriber: sarama config: %w", err))
	}
	if g := sc.Consumer.Group; g.Rebalance.Timeout >= sc.Net.ReadTimeout {
		errs = append(errs, fmt.Errorf("keyed subscriber: Consumer.Group.Rebalance.Timeout %v must be below Net.ReadTimeout %v: "+
			"the broker may hold a JoinGroup that long, and Sarama would give up on it and join again, for good",
			g.Rebalance.Timeout, sc.Net.ReadTimeout))
	}
	if err := c.CatchUp.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.DrainTimeout >= c.Sarama.Consumer.Group.Rebalance.Timeout {
		errs = append(errs, fmt.Errorf("keyed subscriber: DrainTimeout %v must be below Consumer.Group.Rebalance.Timeout %v",
			c.DrainTimeout, c.Sarama.Consumer.Group.Rebalance.Timeout))
	}
	return errors.Join(errs...)
}
