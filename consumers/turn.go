package consumers

import (
	"context"
	"sync/atomic"
	"time"
)

// turn is a message's place in its key's order. KeyedSubscriber gives every
// message it holds a turn linked to the turn of the previous message of the
// same key still unacknowledged when it was read, and hands out several
// messages of a key at once (KeyedSubscriberConfig.MaxInFlightPerKey). A
// handler that receives more than one message of a key must not let a
// message take effect before the earlier ones: Batcher projects a message
// only in the same transaction as its unsettled predecessors (after them) or
// once every predecessor is done.
//
// A turn is done when its message's effect is durable or when it will have
// none: Batcher marks it when the transaction committed or the event was
// rejected for good; KeyedSubscriber marks it when the message is acked
// (which covers dead letters and every other path). A nack leaves it undone:
// the message comes back and its successors keep waiting.
type turn struct {
	prev  atomic.Pointer[turn]
	done  atomic.Bool
	acked atomic.Bool // the message was acked (done too); set by the subscriber
}

// markDone records that t's message has taken effect (or never will).
func (t *turn) markDone() {
	if t != nil {
		t.done.Store(true)
	}
}

// firstPending returns the nearest earlier turn of the key that is not done,
// or nil when every earlier one is. It drops acked turns from the chain as it
// goes, so a long-lived key does not keep its history reachable (a turn done
// but not yet acked stays linked: see earlierUnacked).
func (t *turn) firstPending() *turn {
	if t == nil {
		return nil
	}
	for p := t.prev.Load(); p != nil; {
		if !p.done.Load() {
			return p
		}
		next := p.prev.Load()
		if p.acked.Load() && t.prev.CompareAndSwap(p, next) {
			p = next
			continue
		}
		p = next
	}
	return nil
}

// earlierUnacked reports whether an earlier message of the key is still
// unacked (being projected, or being dead-lettered).
func (t *turn) earlierUnacked() bool {
	if t == nil {
		return false
	}
	for p := t.prev.Load(); p != nil; p = p.prev.Load() {
		if !p.acked.Load() {
			return true
		}
	}
	return false
}

// waitEarlierAcked waits until every earlier message of t's key is acked, or
// ctx ends. A handler calls it before it returns a permanent error, so that
// the dead letters of a room reach the dead-letter topic in the room's order
// (the events of a room are handled concurrently). It polls: dead letters
// are rare.
func (t *turn) waitEarlierAcked(ctx context.Context) {
	for wait := 100 * time.Microsecond; t.earlierUnacked(); wait = min(2*wait, 10*time.Millisecond) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

type turnCtxKey struct{}

func withTurn(ctx context.Context, t *turn) context.Context {
	return context.WithValue(ctx, turnCtxKey{}, t)
}

// turnFrom returns the turn KeyedSubscriber put in a message's context, or nil.
func turnFrom(ctx context.Context) *turn {
	t, _ := ctx.Value(turnCtxKey{}).(*turn)
	return t
}
