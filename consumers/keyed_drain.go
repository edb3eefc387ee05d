package consumers

import (
	"log/slog"
	"slices"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// drain stops handing out, waits up to DrainTimeout for the messages out to
// be acked or nacked (their acks still mark offsets), then lets go of the
// partition: later acks are ignored and the held messages' tokens returned.
func (p *keyedPartition) drain(why string) {
	p.stopHandingOut()
	p.awaitOutcomes(why)
	p.letGo(why)
}

// stopHandingOut makes the partition drain: nothing new is handed out, and
// the successors of a message waiting out NackResendSleep are given up.
func (p *keyedPartition) stopHandingOut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.draining = true
	for _, q := range p.keys {
		for _, r := range q {
			if r.nacked { // waiting out NackResendSleep: not resent now
				p.giveUpLaterLocked(r)
			}
		}
	}
}

// awaitOutcomes waits up to DrainTimeout until no message is out and no
// gap holds the committed prefix back.
func (p *keyedPartition) awaitOutcomes(why string) {
	timer := time.NewTimer(p.s.cfg.DrainTimeout)
	defer timer.Stop()
	for {
		n, gap, gapMsg := p.outstanding()
		if n == 0 && gap == nil {
			return
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
			p.handOutGap(gap, gapMsg)
		case <-p.notify: // an ack or nack came in
		case <-timer.C:
			p.log.Warn("partition released with messages still unacked; they will be delivered again",
				slog.String("why", why), slog.Int("unacked", n), slog.Duration("drain_timeout", p.s.cfg.DrainTimeout))
			return
		}
	}
}

// outstanding is how many messages are out, and the next gap to hand out
// (see nextGapLocked) with its message, or nil.
func (p *keyedPartition) outstanding() (n int, gap *keyedRecord, gapMsg *message.Message) {
	p.mu.Lock()
	defer p.mu.Unlock()
	gap = p.nextGapLocked()
	if gap != nil {
		gapMsg = gap.msg
	}
	return p.processing, gap, gapMsg
}

// handOutGap records that gap's msg was sent while draining, and watches
// for its outcome.
func (p *keyedPartition) handOutGap(gap *keyedRecord, msg *message.Message) {
	p.mu.Lock()
	p.ready = slices.DeleteFunc(p.ready, func(r *keyedRecord) bool { return r == gap })
	p.processing++
	p.mu.Unlock()
	p.watchOutcome(gap, msg)
}

// letGo closes the partition: the held messages' contexts end, their tokens
// and bytes go back, and the watchers of their outcomes return.
func (p *keyedPartition) letGo(why string) {
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
