package consumers

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
)

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

func (p *keyedPartition) wake() {
	select {
	case p.notify <- struct{}{}:
	default:
	}
}
