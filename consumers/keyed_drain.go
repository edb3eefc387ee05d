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
