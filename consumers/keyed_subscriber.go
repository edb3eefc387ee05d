package consumers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
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
// readable with watermill-kafka's kafka.MessagePartitionFromCtx,
// MessagePartitionOffsetFromCtx, MessageTimestampFromCtx and
// MessageKeyFromCtx. A message's context keeps the values of Subscribe's ctx
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
	if err := kafkaCtxKeysErr(); err != nil {
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
	log := s.log.With(slog.String("topic", topic))
	go func() {
		defer s.subs.Done()
		defer s.unsubscribed(conns, static)
		defer s.unsubscribedTopic(st)
		lagDone := make(chan struct{})
		go func() {
			defer close(lagDone)
			s.readGroupLag(consumeCtx, sc, topic, st, log)
		}()
		errsDone := make(chan struct{})
		go func() {
			defer close(errsDone)
			for err := range group.Errors() {
				level := slog.LevelWarn
				if errors.Is(err, errConnsCut) || errors.Is(err, errStopping) {
					level = slog.LevelDebug // what a stop does on purpose
				}
				log.Log(context.Background(), level, "kafka consumer group error", slog.Any("err", err))
			}
		}()
		balanced := make(chan struct{})
		go func() {
			defer close(balanced)
			s.balanceCatchUp(consumeCtx, group, h)
		}()
		s.consume(consumeCtx, group, topic, h, log)
		cancel()
		<-balanced
		<-lagDone
		// Every ConsumeClaim has returned: nothing sends on out any more.
		h.leave(group, sc, log)
		<-errsDone
		stop()
		stopping()
		cancel()
		close(out)
	}()
	return out, nil
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

func (h *keyedGroupHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	p := &keyedPartition{
		h: h, s: h.s, topic: claim.Topic(), id: claim.Partition(), sess: sess, claim: claim, out: h.out, msgCtx: h.msgCtx,
		log:      h.s.log.With(slog.String("topic", claim.Topic()), slog.Int("partition", int(claim.Partition()))),
		notify:   make(chan struct{}, 1),
		done:     make(chan struct{}),
		keys:     make(map[string][]*keyedRecord),
		marked:   -1,
		markedAt: time.Now(),
	}
	p.next.Store(-1)
	if off := claim.InitialOffset(); off >= 0 {
		p.marked = off
		p.next.Store(off)
	}
	h.s.register(p)
	defer h.s.unregister(p)
	p.run()
	return nil
}

// keyedPartition is one claimed partition: its messages from being read
// until their offset is marked.
type keyedPartition struct {
	h      *keyedGroupHandler
	s      *KeyedSubscriber
	topic  string
	id     int32
	sess   sarama.ConsumerGroupSession
	claim  sarama.ConsumerGroupClaim
	out    chan<- *message.Message
	msgCtx context.Context
	log    *slog.Logger

	next    atomic.Int64 // offset of the next message to read (-1 while unknown)
	catchUp catchUpState // balanceCatchUp's

	notify   chan struct{} // wakes run after a change by a watcher
	done     chan struct{} // closed when the claim is over
	watchers sync.WaitGroup

	mu         sync.Mutex
	order      []*keyedRecord            // held messages by offset; the acked prefix is popped and marked
	keys       map[string][]*keyedRecord // held, unacked messages by key, by offset; the first MaxInFlightPerKey may be out
	ready      []*keyedRecord            // among the first MaxInFlightPerKey of their key, not out: to hand out
	processing int                       // handed out, not acked or nacked
	bytes      int64                     // size of the held messages
	charged    int64                     // their charge on the byte budget
	marked     int64
	markedAt   time.Time // when marked last moved (or the claim began)
	draining   bool      // no more handing out
	closed     bool      // claim over: acks are ignored
}

// keyedRecord is a Kafka message held by its partition.
type keyedRecord struct {
	offset int64
	size   int64 // messageSize
	charge int64 // on the byte budget
	key    string
	base   context.Context // msgCtx with the Kafka values and the turn
	turn   *turn
	msg    *message.Message
	cancel context.CancelFunc // of msg's context
	acked  bool
	nacked bool // nacked and not handed out again yet
}

// run hands out messages until the claim is released or the session ends,
// then drains.
func (p *keyedPartition) run() {
	msgs := p.claim.Messages()
	sessionDone := p.sess.Context().Done()
	// pending was read but holds no token yet: at most one per partition
	// beyond the caps, so that a partition never holds an idle token and the
	// end of the claim (Messages closing) is seen while below the cap. Its
	// charge on the byte budget is taken first (reserved), then its token.
	var pending *sarama.ConsumerMessage
	var size, charge int64
	reserved := false
	defer func() {
		if reserved {
			p.s.budget.release(charge, 0)
		}
		p.s.budget.forget(p)
	}()
	for {
		p.mu.Lock()
		var next *keyedRecord
		var nextMsg *message.Message
		if len(p.ready) > 0 {
			next, nextMsg = p.ready[0], p.ready[0].msg
		}
		full := len(p.order) >= p.s.cfg.MaxInFlightPerPartition ||
			(pending != nil && !reserved && p.s.budget.partitionFull(p.charged, charge))
		p.mu.Unlock()

		var in <-chan *sarama.ConsumerMessage
		var admit chan<- struct{}
		var budgetFreed <-chan struct{}
		if pending == nil {
			in = msgs
		} else if !full {
			if !reserved {
				reserved, budgetFreed = p.s.budget.reserve(p, charge)
			}
			if reserved {
				admit = p.s.tokens
			}
		}
		var out chan<- *message.Message
		if next != nil {
			out = p.out
		}

		select {
		case km, ok := <-in:
			if !ok {
				p.drain("claim released")
				return
			}
			pending = km
			size = messageSize(km)
			charge = p.s.budget.charge(size)
			p.next.Store(km.Offset + 1)
		case admit <- struct{}{}:
			p.admit(pending, size, charge)
			pending, reserved = nil, false
		case out <- nextMsg:
			p.handOut(next, nextMsg)
		case <-budgetFreed:
		case <-p.notify:
		case <-sessionDone:
			p.drain("session ended")
			return
		}
	}
}

// admit holds km (its token taken) and makes it ready if its key has fewer
// than MaxInFlightPerKey earlier messages held.
func (p *keyedPartition) admit(km *sarama.ConsumerMessage, size, charge int64) {
	p.s.budget.hold(size)
	msg, err := kafka.DefaultMarshaler{}.Unmarshal(km)
	if err != nil { // DefaultMarshaler does not fail; keep the value regardless
		msg = message.NewMessage("", km.Value)
	}
	rec := &keyedRecord{offset: km.Offset, size: size, charge: charge, key: string(km.Key), turn: &turn{}}
	mc := &messageCtx{Context: p.msgCtx, partition: km.Partition, offset: km.Offset, timestamp: km.Timestamp, key: km.Key, turn: rec.turn,
		part: p, rec: rec}
	if p.s.cfg.Prepare != nil {
		mc.prepared = prepare(p.s.cfg.Prepare, km.Value)
	}
	rec.base = mc
	p.mu.Lock()
	defer p.mu.Unlock()
	rec.setMessage(msg)
	if p.marked < 0 { // nothing committed: the group resumes from the first message read
		p.marked = rec.offset
	}
	p.order = append(p.order, rec)
	p.bytes += size
	p.charged += charge
	q := p.keys[rec.key]
	if len(q) > 0 {
		rec.turn.prev.Store(q[len(q)-1].turn)
	}
	p.keys[rec.key] = append(q, rec)
	if len(q) < p.s.cfg.MaxInFlightPerKey {
		p.ready = append(p.ready, rec)
	}
}

// setMessage makes msg the record's current delivery, with its own context.
func (r *keyedRecord) setMessage(msg *message.Message) {
	ctx, cancel := context.WithCancel(r.base)
	msg.SetContext(ctx)
	r.msg, r.cancel = msg, cancel
}

// handOut records that rec's msg was sent, and watches for its ack.
func (p *keyedPartition) handOut(rec *keyedRecord, msg *message.Message) {
	p.mu.Lock()
	p.ready[0] = nil
	p.ready = p.ready[1:]
	p.processing++
	p.mu.Unlock()
	p.watchOutcome(rec, msg)
}

// watchOutcome waits, on a goroutine of its own, for msg's Ack or Nack,
// unless SettleKeyed reports its outcome.
func (p *keyedPartition) watchOutcome(rec *keyedRecord, msg *message.Message) {
	if p.s.cfg.SettledByMiddleware {
		return
	}
	p.watchers.Add(1)
	go p.watch(rec, msg)
}

// settled takes the outcome of rec's delivery from SettleKeyed: acked, or
// nacked (then it is handed out again after NackResendSleep).
func (p *keyedPartition) settled(rec *keyedRecord, acked bool) {
	if acked {
		p.ack(rec)
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.watchers.Add(1) // before drain can close done and wait
	p.mu.Unlock()
	go func() {
		defer p.watchers.Done()
		p.afterNack(rec)
	}()
}

func (p *keyedPartition) watch(rec *keyedRecord, msg *message.Message) {
	defer p.watchers.Done()
	select {
	case <-msg.Acked():
		p.ack(rec)
	case <-msg.Nacked():
		p.afterNack(rec)
	case <-p.done:
	}
}

// afterNack records rec's nack and hands it out again after NackResendSleep.
func (p *keyedPartition) afterNack(rec *keyedRecord) {
	if !p.nack(rec) {
		return
	}
	if d := p.s.cfg.NackResendSleep; d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-p.done:
			return
		}
	}
	p.resend(rec)
}

// ack releases the next message of rec's key and marks the offset after the
// acked prefix.
func (p *keyedPartition) ack(rec *keyedRecord) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	rec.cancel()
	rec.turn.markDone()
	rec.turn.acked.Store(true)
	rec.acked, rec.msg = true, nil
	p.processing--
	q := p.keys[rec.key]
	i := slices.Index(q, rec) // among the first MaxInFlightPerKey: only those are ever out
	q = slices.Delete(q, i, i+1)
	if len(q) == 0 {
		delete(p.keys, rec.key)
	} else {
		p.keys[rec.key] = q
		if k := p.s.cfg.MaxInFlightPerKey; len(q) >= k {
			p.ready = append(p.ready, q[k-1]) // moved into the window
		}
	}
	n := 0
	var size, charge int64
	for n < len(p.order) && p.order[n].acked {
		size += p.order[n].size
		charge += p.order[n].charge
		n++
	}
	if n > 0 {
		next := p.order[n-1].offset + 1
		clear(p.order[:n])
		p.order = p.order[n:]
		p.bytes -= size
		p.charged -= charge
		p.marked, p.markedAt = next, time.Now()
		p.sess.MarkOffset(p.topic, p.id, next, "")
	}
	p.mu.Unlock()
	for range n {
		<-p.s.tokens
	}
	if n > 0 {
		p.s.budget.release(charge, size)
	}
	p.wake()
}

// nack records that rec is no longer out; it reports whether to hand it out again.
func (p *keyedPartition) nack(rec *keyedRecord) bool {
	p.mu.Lock()
	defer p.wake()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	rec.cancel()
	p.processing--
	rec.nacked = true
	if p.draining {
		p.giveUpLaterLocked(rec)
		return false
	}
	return true
}

// giveUpLaterLocked ends the contexts of the messages of rec's key after it.
// rec was nacked while the partition drains, so it is not handed out again
// here: its successors, which wait for it (Batcher), would otherwise hold
// the drain until DrainTimeout. Their handlers give them up at once, and the
// partition's next owner delivers rec and them again, in order.
func (p *keyedPartition) giveUpLaterLocked(rec *keyedRecord) {
	for _, r := range p.keys[rec.key] {
		if r.offset > rec.offset {
			r.cancel()
		}
	}
}

// resend makes a fresh copy of rec's message ready again; it is still in its key's window.
func (p *keyedPartition) resend(rec *keyedRecord) {
	p.mu.Lock()
	defer p.wake()
	defer p.mu.Unlock()
	if p.closed || p.draining {
		return // drain gave up rec's successors (see giveUpLaterLocked)
	}
	rec.nacked = false
	rec.setMessage(rec.msg.Copy())
	p.ready = append(p.ready, rec)
}

func (p *keyedPartition) wake() {
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// drain stops handing out, waits up to DrainTimeout for the messages out to
// be acked or nacked (their acks still mark offsets), then lets go of the
// partition: later acks are ignored and the held messages' tokens returned.
func (p *keyedPartition) drain(why string) {
	p.mu.Lock()
	p.draining = true
	for _, q := range p.keys {
		for _, r := range q {
			if r.nacked { // waiting out NackResendSleep: not resent now
				p.giveUpLaterLocked(r)
			}
		}
	}
	p.mu.Unlock()
	timer := time.NewTimer(p.s.cfg.DrainTimeout)
	defer timer.Stop()
wait:
	for {
		p.mu.Lock()
		n := p.processing
		gap := p.nextGapLocked()
		var gapMsg *message.Message
		if gap != nil {
			gapMsg = gap.msg
		}
		p.mu.Unlock()
		if n == 0 && gap == nil {
			break
		}
		// Messages below the highest acked offset are still handed out, so
		// that the committed prefix reaches everything processed: a stop then
		// leaves nothing processed to be delivered again.
		var out chan<- *message.Message
		if gap != nil {
			out = p.out
		}
		select {
		case out <- gapMsg:
			p.mu.Lock()
			p.ready = slices.DeleteFunc(p.ready, func(r *keyedRecord) bool { return r == gap })
			p.processing++
			p.mu.Unlock()
			p.watchOutcome(gap, gapMsg)
		case <-p.notify:
		case <-timer.C:
			p.log.Warn("partition released with messages still unacked; they will be delivered again",
				slog.String("why", why), slog.Int("unacked", n), slog.Duration("drain_timeout", p.s.cfg.DrainTimeout))
			break wait
		}
	}
	p.mu.Lock()
	p.closed = true
	held := p.order
	p.order, p.ready, p.keys = nil, nil, nil
	size, charge := p.bytes, p.charged
	p.bytes, p.charged = 0, 0
	p.mu.Unlock()
	for _, rec := range held {
		rec.cancel()
		<-p.s.tokens
	}
	p.s.budget.release(charge, size)
	close(p.done)
	p.watchers.Wait()
	p.log.Debug("partition released", slog.String("why", why), slog.Int64("marked", p.marked))
}

// nextGapLocked returns a ready message whose offset is below the highest
// acked one (it holds the committed prefix back), or nil.
func (p *keyedPartition) nextGapLocked() *keyedRecord {
	limit := int64(-1)
	for i := len(p.order) - 1; i >= 0; i-- {
		if p.order[i].acked {
			limit = p.order[i].offset
			break
		}
	}
	for _, r := range p.ready {
		if r.offset < limit {
			return r
		}
	}
	return nil
}
