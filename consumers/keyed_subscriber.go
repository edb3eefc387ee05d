package consumers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill/message"
)

// KeyedSubscriber is a Watermill subscriber on a Sarama consumer group that
// keeps many messages of a partition in flight while keeping per-key order.
//
// Unlike watermill-kafka's subscriber (one message per partition until it is
// acked), it hands out every message whose key has fewer than
// MaxInFlightPerKey earlier messages of the same partition still unacked (a
// nil and an empty key count as one key), so a handler, or the Router's
// goroutine per message, can work on many events of a partition at once, e.g.
// to batch them into one transaction. With MaxInFlightPerKey 1 (the default)
// the events of one key (room) are processed one at a time and in partition
// order; above 1 the handler keeps a key's order with the turn each message
// carries (see Batcher).
//
// Under a backlog, a partition far less behind than the subscription's
// furthest is not fetched for a while, so that the partitions finish
// together (see CatchUpConfig).
//
// An offset is marked only when it and every earlier offset of the partition
// were acked, so a crash never skips an unprocessed message; Sarama's
// auto-commit commits marked offsets periodically and when a session ends. A
// nacked message is handed out again after NackResendSleep and holds back the
// later messages of its key (only those) until acked.
//
// Messages carry the Kafka value as payload, the headers as metadata (the
// "_watermill_message_uuid" header as UUID), as kafka.DefaultMarshaler
// decodes them, and in their context the partition, offset, timestamp and key,
// readable with MessagePartition, MessageOffset, MessageTimestamp and
// MessageKey. A message's context keeps the values of Subscribe's ctx
// but not its cancellation: when ctx ends or Close is called, handlers in flight
// get DrainTimeout to finish; the context is cancelled once the message is
// acked or nacked, or when that time is up.
type KeyedSubscriber struct {
	cfg    KeyedSubscriberConfig
	sarama *sarama.Config
	log    *slog.Logger
	tokens chan struct{} // one per message held, over all partitions
	budget *byteBudget   // bytes of the messages held, over all partitions

	closeCtx  context.Context // cancelled by Close
	closeNow  context.CancelFunc
	mu        sync.Mutex
	closed    bool
	static    bool // a subscription with GroupInstanceID runs
	subs      sync.WaitGroup
	partition map[keyedTopicPartition]*keyedPartition
	topics    map[string]*topicState
	conns     []*groupConns // of every subscription, for crash (tests)
}

type keyedTopicPartition struct {
	topic     string
	partition int32
}

// NewKeyedSubscriber checks cfg and returns a subscriber; it connects on Subscribe.
func NewKeyedSubscriber(cfg KeyedSubscriberConfig) (*KeyedSubscriber, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sc := *cfg.Sarama // the caller's configuration stays as it was
	sc.Consumer.Offsets.Initial = cfg.InitialOffset
	if cfg.GroupInstanceID != "" {
		sc.Consumer.Group.InstanceId = cfg.GroupInstanceID
	}
	// Committing is Sarama's periodic auto-commit of what was marked; turning
	// it off would commit nothing.
	sc.Consumer.Offsets.AutoCommit.Enable = true
	sc.Consumer.Return.Errors = true
	if err := sc.Validate(); err != nil {
		return nil, fmt.Errorf("keyed subscriber: sarama config: %w", err)
	}
	closeCtx, closeNow := context.WithCancel(context.Background())
	return &KeyedSubscriber{
		cfg:       cfg,
		sarama:    &sc,
		log:       cfg.Logger.With(slog.String("consumer_group", cfg.ConsumerGroup)),
		tokens:    make(chan struct{}, cfg.MaxInFlight),
		budget:    newByteBudget(cfg.MaxInFlightBytes),
		closeCtx:  closeCtx,
		closeNow:  closeNow,
		partition: make(map[keyedTopicPartition]*keyedPartition),
		topics:    make(map[string]*topicState),
	}, nil
}

// Subscribe joins the consumer group for topic and returns the channel of its
// messages, closed once ctx ends or Close is called and the partitions were
// drained. Each call is a separate member of the group.
func (s *KeyedSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	static := s.sarama.Consumer.Group.InstanceId != ""
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errors.New("keyed subscriber: closed")
	}
	if static && s.static {
		s.mu.Unlock()
		return nil, errors.New("keyed subscriber: a static member (GroupInstanceID) subscribes once at a time")
	}
	s.static = s.static || static
	s.subs.Add(1)
	st := s.subscribedLocked(topic)
	conns := newGroupConns(s.sarama)
	s.conns = append(s.conns, conns)
	s.mu.Unlock()

	sc := conns.config(s.sarama)
	group, err := sarama.NewConsumerGroup(s.cfg.Brokers, s.cfg.ConsumerGroup, sc)
	if err != nil {
		s.unsubscribedTopic(st)
		s.unsubscribed(conns, static)
		s.subs.Done()
		return nil, fmt.Errorf("keyed subscriber: join consumer group %s for %s: %w", s.cfg.ConsumerGroup, topic, err)
	}
	out := make(chan *message.Message)
	consumeCtx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.closeCtx, cancel)
	h := &keyedGroupHandler{s: s, out: out, msgCtx: context.WithoutCancel(ctx), conns: conns}
	stopping := context.AfterFunc(consumeCtx, h.stopping)
	go func() {
		defer s.subs.Done()
		defer s.unsubscribed(conns, static)
		defer s.unsubscribedTopic(st)
		s.serve(consumeCtx, cancel, group, sc, topic, st, h)
		stop()
		stopping()
		cancel()
		close(out)
	}()
	return out, nil
}

// serve runs one member of the group until ctx ends, with the reading of
// the group's lag, the catch-up balancer and the logging of the group's
// errors beside it, then leaves the group. Once it returns, nothing sends on
// the member's output channel any more.
func (s *KeyedSubscriber) serve(ctx context.Context, cancel context.CancelFunc, group sarama.ConsumerGroup, sc *sarama.Config, topic string, st *topicState, h *keyedGroupHandler) {
	log := s.log.With(slog.String("topic", topic))
	lagDone := make(chan struct{})
	go func() {
		defer close(lagDone)
		s.readGroupLag(ctx, sc, topic, st, log)
	}()
	errsDone := make(chan struct{})
	go func() {
		defer close(errsDone)
		logGroupErrors(group, log)
	}()
	balanced := make(chan struct{})
	go func() {
		defer close(balanced)
		s.balanceCatchUp(ctx, group, h)
	}()
	s.consume(ctx, group, topic, h, log)
	cancel()
	<-balanced
	<-lagDone
	// Every ConsumeClaim has returned: nothing sends on out any more.
	h.leave(group, sc, log)
	<-errsDone
}

// logGroupErrors logs the group's errors until it is closed.
func logGroupErrors(group sarama.ConsumerGroup, log *slog.Logger) {
	for err := range group.Errors() {
		level := slog.LevelWarn
		if errors.Is(err, errConnsCut) || errors.Is(err, errStopping) {
			level = slog.LevelDebug // what a stop does on purpose
		}
		log.Log(context.Background(), level, "kafka consumer group error", slog.Any("err", err))
	}
}

// keyedGroupHandler is the Sarama handler of one subscription.
type keyedGroupHandler struct {
	s      *KeyedSubscriber
	out    chan<- *message.Message
	msgCtx context.Context // Subscribe's ctx without its cancellation
	conns  *groupConns

	mu        sync.Mutex
	inSession bool // from Setup until the next Consume call (see stopping)
	stopped   bool
	deadline  *time.Timer // cuts the connections if a stop takes too long
}

// consume runs consumer group sessions until ctx ends; a session ends at
// every rebalance.
func (s *KeyedSubscriber) consume(ctx context.Context, group sarama.ConsumerGroup, topic string, h *keyedGroupHandler, log *slog.Logger) {
	for ctx.Err() == nil && h.joining() {
		err := group.Consume(ctx, []string{topic}, h)
		if ctx.Err() != nil || errors.Is(err, sarama.ErrClosedConsumerGroup) {
			return
		}
		if err != nil {
			log.Warn("kafka consume failed; retrying in 1s", slog.Any("err", err))
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}

// Close stops consuming, lets every partition drain (see DrainTimeout),
// waits until the sessions ended (committing marked offsets) and the output
// channels are closed. It is safe to call more than once.
func (s *KeyedSubscriber) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.closeNow()
	s.subs.Wait()
	return nil
}

// KeyedPartitionStats is the state of one partition the subscriber holds now.
type KeyedPartitionStats struct {
	Topic     string
	Partition int32
	// InFlight counts the messages read and not yet committable (not acked,
	// or acked behind one that is not): at most MaxInFlightPerPartition.
	InFlight int
	// Processing counts the messages handed out and not yet acked or nacked.
	Processing int
	// Bytes is the size of the InFlight messages (keys, values, headers).
	Bytes int64
	// Marked is the offset the group resumes from as far as this member
	// knows (the last marked offset, else the one the claim started from or
	// the first one read; -1 while unknown). Marked offsets are committed
	// within Sarama's Consumer.Offsets.AutoCommit.Interval.
	Marked int64
	// MarkedAt is when Marked last moved (or the claim began).
	MarkedAt time.Time
	// HighWaterMark is the offset the next produced message will get; lag is
	// HighWaterMark - Marked.
	HighWaterMark int64
	// Paused says that the partition is not fetched for now, to let the
	// partitions further behind catch up (see CatchUpConfig).
	Paused bool
}

// Stats returns the state of the partitions currently claimed, by topic and partition.
func (s *KeyedSubscriber) Stats() []KeyedPartitionStats {
	s.mu.Lock()
	parts := make([]*keyedPartition, 0, len(s.partition))
	for _, p := range s.partition {
		parts = append(parts, p)
	}
	s.mu.Unlock()
	stats := make([]KeyedPartitionStats, 0, len(parts))
	for _, p := range parts {
		p.mu.Lock()
		stats = append(stats, KeyedPartitionStats{
			Topic: p.topic, Partition: p.id,
			InFlight: len(p.order), Processing: p.processing, Bytes: p.bytes, Marked: p.marked, MarkedAt: p.markedAt,
			HighWaterMark: p.claim.HighWaterMarkOffset(), Paused: p.catchUp.paused,
		})
		p.mu.Unlock()
	}
	slices.SortFunc(stats, func(a, b KeyedPartitionStats) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	return stats
}

// InFlightBytes is the size of the messages held over all partitions
// (bounded by MaxInFlightBytes; see byteBudget).
func (s *KeyedSubscriber) InFlightBytes() int64 { return s.budget.held.Load() }

func (s *KeyedSubscriber) register(p *keyedPartition) {
	s.mu.Lock()
	s.partition[keyedTopicPartition{p.topic, p.id}] = p
	s.topicLocked(p.topic).assigned++
	s.mu.Unlock()
}

func (s *KeyedSubscriber) unregister(p *keyedPartition) {
	s.mu.Lock()
	if k := (keyedTopicPartition{p.topic, p.id}); s.partition[k] == p {
		delete(s.partition, k)
		st := s.topicLocked(p.topic)
		if st.assigned--; st.assigned == 0 {
			st.unassignedSince = time.Now()
		}
	}
	s.mu.Unlock()
}
