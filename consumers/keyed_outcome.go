package consumers

import (
	"slices"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// SettleKeyed is the router middleware that reports each message's outcome
// to its KeyedSubscriber with SettledByMiddleware set. It must be the
// outermost, as it tells the outcome the router acts on: a nil error and no
// produced messages is an Ack; an error, or a panic (which the router
// recovers and nacks), is a Nack. A message that produced messages is
// settled by its Ack or Nack, as the router may still fail to publish them.
func SettleKeyed(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) (produced []*message.Message, err error) {
		mc := messageFrom(msg.Context())
		if mc == nil || !mc.part.s.cfg.SettledByMiddleware {
			return h(msg)
		}
		settled := false
		defer func() {
			if !settled {
				mc.part.settled(mc.rec, false) // panicking: the router nacks
			}
		}()
		produced, err = h(msg)
		settled = true
		switch {
		case err != nil:
			mc.part.settled(mc.rec, false)
		case len(produced) == 0:
			mc.part.settled(mc.rec, true)
		default:
			mc.part.watchUnlessClosed(mc.rec, msg)
		}
		return produced, err
	}
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

// watchUnlessClosed waits, on a goroutine of its own, for msg's Ack or Nack,
// unless the claim is over.
func (p *keyedPartition) watchUnlessClosed(rec *keyedRecord, msg *message.Message) {
	p.mu.Lock()
	closed := p.closed
	if !closed {
		p.watchers.Add(1)
	}
	p.mu.Unlock()
	if !closed {
		go p.watch(rec, msg)
	}
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
	p.leaveKeyWindowLocked(rec)
	n, size, charge := p.markAckedPrefixLocked()
	p.mu.Unlock()
	for range n {
		<-p.s.tokens
	}
	if n > 0 {
		p.s.budget.release(charge, size)
	}
	p.wake()
}

// leaveKeyWindowLocked takes the acked rec off its key, moving the next
// message of the key into the key's window (ready to hand out).
func (p *keyedPartition) leaveKeyWindowLocked(rec *keyedRecord) {
	q := p.keys[rec.key]
	i := slices.Index(q, rec) // among the first MaxInFlightPerKey: only those are ever out
	q = slices.Delete(q, i, i+1)
	if len(q) == 0 {
		delete(p.keys, rec.key)
		return
	}
	p.keys[rec.key] = q
	if k := p.s.cfg.MaxInFlightPerKey; len(q) >= k {
		p.ready = append(p.ready, q[k-1]) // moved into the window
	}
}

// markAckedPrefixLocked drops the acked messages at the head of the
// partition and marks the offset after them; it returns how many there
// were, their size and their charge on the byte budget.
func (p *keyedPartition) markAckedPrefixLocked() (n int, size, charge int64) {
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
	return n, size, charge
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
