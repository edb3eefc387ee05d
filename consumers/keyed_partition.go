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

// ConsumeClaim hands out the messages of one claimed partition until the
// claim is over.
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

// readAhead is the message run read from the claim and has not admitted
// yet, if any: at most one per partition beyond the caps, so that a
// partition never holds an idle token and the end of the claim (Messages
// closing) is seen while below the cap. Its charge on the byte budget is
// taken first (reserved), then its token.
type readAhead struct {
	km       *sarama.ConsumerMessage
	size     int64 // messageSize
	charge   int64 // on the byte budget
	reserved bool  // the charge is taken from the byte budget
}

// run hands out messages until the claim is released or the session ends,
// then drains.
func (p *keyedPartition) run() {
	msgs := p.claim.Messages()
	sessionDone := p.sess.Context().Done()
	var ahead readAhead
	defer p.releaseReadAhead(&ahead)
	for {
		next, nextMsg, full := p.nextReady(&ahead)
		read, admit, budgetFreed := p.admission(&ahead, full, msgs)
		var out chan<- *message.Message
		if next != nil {
			out = p.out
		}
		select {
		case km, ok := <-read:
			if !ok {
				p.drain("claim released")
				return
			}
			p.keepReadAhead(&ahead, km)
		case admit <- struct{}{}:
			p.admitReadAhead(&ahead)
		case out <- nextMsg:
			p.handOut(next, nextMsg)
		case <-budgetFreed: // the byte budget has room: reserve again
		case <-p.notify: // an ack, nack or resend changed what is held or ready
		case <-sessionDone:
			p.drain("session ended")
			return
		}
	}
}

// nextReady returns the next message to hand out (nil if none) and whether
// the partition is full: it holds MaxInFlightPerPartition messages, or the
// read-ahead message, not reserved yet, does not fit the partition's share
// of the byte budget.
func (p *keyedPartition) nextReady(ahead *readAhead) (next *keyedRecord, msg *message.Message, full bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.ready) > 0 {
		next, msg = p.ready[0], p.ready[0].msg
	}
	full = len(p.order) >= p.s.cfg.MaxInFlightPerPartition ||
		(ahead.km != nil && !ahead.reserved && p.s.budget.partitionFull(p.charged, ahead.charge))
	return next, msg, full
}

// admission returns what run waits on to take in a message: the claim's
// messages while nothing is read ahead; else, unless the partition is full,
// a token once the read-ahead message's charge is reserved on the byte
// budget, or the budget's word that it has room again.
func (p *keyedPartition) admission(ahead *readAhead, full bool, msgs <-chan *sarama.ConsumerMessage) (read <-chan *sarama.ConsumerMessage, admit chan<- struct{}, budgetFreed <-chan struct{}) {
	if ahead.km == nil {
		return msgs, nil, nil
	}
	if full {
		return nil, nil, nil
	}
	if !ahead.reserved {
		ahead.reserved, budgetFreed = p.s.budget.reserve(p, ahead.charge)
	}
	if ahead.reserved {
		admit = p.s.tokens
	}
	return nil, admit, budgetFreed
}

// keepReadAhead makes km, just read from the claim, the read-ahead message.
func (p *keyedPartition) keepReadAhead(ahead *readAhead, km *sarama.ConsumerMessage) {
	size := messageSize(km)
	*ahead = readAhead{km: km, size: size, charge: p.s.budget.charge(size)}
	p.next.Store(km.Offset + 1)
}

// admitReadAhead holds the read-ahead message, its token just taken.
func (p *keyedPartition) admitReadAhead(ahead *readAhead) {
	p.admit(ahead.km, ahead.size, ahead.charge)
	ahead.km, ahead.reserved = nil, false
}

// releaseReadAhead gives back the charge reserved for the read-ahead
// message, if any, once run is over, and takes the partition off the byte
// budget's queue.
func (p *keyedPartition) releaseReadAhead(ahead *readAhead) {
	if ahead.reserved {
		p.s.budget.release(ahead.charge, 0)
	}
	p.s.budget.forget(p)
}

// admit holds km (its token taken) and makes it ready if its key has fewer
// than MaxInFlightPerKey earlier messages held.
func (p *keyedPartition) admit(km *sarama.ConsumerMessage, size, charge int64) {
	p.s.budget.hold(size)
	rec, msg := p.newRecord(km, size, charge)
	p.mu.Lock()
	defer p.mu.Unlock()
	rec.setMessage(msg)
	p.holdLocked(rec)
}

// newRecord returns km's record and its message as kafka.DefaultMarshaler
// decodes it, whose context tells where it was read, its turn and what
// Prepare made of it.
func (p *keyedPartition) newRecord(km *sarama.ConsumerMessage, size, charge int64) (*keyedRecord, *message.Message) {
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
	return rec, msg
}

// holdLocked adds rec to the held messages, after the earlier ones of its
// key, and makes it ready if it falls in its key's window.
func (p *keyedPartition) holdLocked(rec *keyedRecord) {
	if p.marked < 0 { // nothing committed: the group resumes from the first message read
		p.marked = rec.offset
	}
	p.order = append(p.order, rec)
	p.bytes += rec.size
	p.charged += rec.charge
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
