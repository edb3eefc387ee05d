package consumers

import (
	"sync"
	"sync/atomic"

	"github.com/IBM/sarama"
)

// byteBudget bounds the bytes of the messages a KeyedSubscriber holds, over
// all its partitions (MaxInFlightBytes), so that memory follows the budget
// and not the message count times the largest message.
//
// A message is charged its size, but at most half the budget: a message
// larger than that still fits once the others held take no more than half,
// so it is never stuck, and at most two such messages are held at once. What
// is held is then at most MaxInFlightBytes, or twice the largest message
// when messages are larger than half of it. A partition may hold at most
// half the budget too (and always one message), so a partition whose head
// never completes leaves the other half to the others.
//
// The first partition that finds the budget short is served before the
// others: while it waits, a reservation leaves room for it, so a large
// message is not starved by a stream of small ones of other partitions.
// Reserving and releasing are atomic additions unless a partition waits.
type byteBudget struct {
	limit int64
	used  atomic.Int64 // charged
	held  atomic.Int64 // actual bytes, for the gauge and Stats
	queue atomic.Bool  // a partition waits: reservations take the slow path

	mu         sync.Mutex
	head       *keyedPartition // the partition served first, or nil
	headCharge int64
	freed      chan struct{} // closed by a release while a partition waits
}

func newByteBudget(limit int64) *byteBudget { return &byteBudget{limit: limit} }

// charge is what a message of size bytes takes from the budget.
func (b *byteBudget) charge(size int64) int64 { return min(size, b.limit/2) }

// partitionFull tells whether a partition holding charged bytes may not add
// one more message charged c.
func (b *byteBudget) partitionFull(charged, c int64) bool {
	return charged > 0 && charged+c > b.limit/2
}

// reserve takes c (a charge) for p. When the budget is short it returns
// false and a channel closed once some of it was released: p tries again
// then, and is served before partitions that did not wait.
func (b *byteBudget) reserve(p *keyedPartition, c int64) (bool, <-chan struct{}) {
	if !b.queue.Load() {
		for u := b.used.Load(); u+c <= b.limit; u = b.used.Load() {
			if b.used.CompareAndSwap(u, u+c) {
				return true, nil
			}
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	// Announce the wait before looking at the budget again: a release
	// either happened before (and is seen below) or sees queue set and
	// wakes us (it takes mu, so after freed is handed out).
	if b.head == nil {
		b.head, b.headCharge = p, c
		b.queue.Store(true)
	}
	room := int64(0)
	if b.head != p {
		room = b.headCharge
	}
	for u := b.used.Load(); u+c+room <= b.limit; u = b.used.Load() {
		if b.used.CompareAndSwap(u, u+c) {
			if b.head == p {
				b.dequeueLocked()
			}
			return true, nil
		}
	}
	if b.freed == nil {
		b.freed = make(chan struct{})
	}
	return false, b.freed
}

// forget drops p's place at the head of the queue (its claim ended).
func (b *byteBudget) forget(p *keyedPartition) {
	if !b.queue.Load() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.head == p {
		b.dequeueLocked()
	}
}

// dequeueLocked ends the head's wait, and wakes the others: releases stop
// waking them now, so one of them must take the head's place.
func (b *byteBudget) dequeueLocked() {
	b.head, b.headCharge = nil, 0
	b.queue.Store(false)
	b.wakeLocked()
}

// hold counts size bytes of a message admitted (its charge reserved).
func (b *byteBudget) hold(size int64) { b.held.Add(size) }

// release returns the charge c and size bytes of messages no longer held.
func (b *byteBudget) release(c, size int64) {
	b.held.Add(-size)
	b.used.Add(-c)
	if !b.queue.Load() {
		return
	}
	b.mu.Lock()
	b.wakeLocked()
	b.mu.Unlock()
}

func (b *byteBudget) wakeLocked() {
	if b.freed != nil {
		close(b.freed)
		b.freed = nil
	}
}

// messageSize is what a message read from Kafka takes while held: its key,
// value and headers. Sarama decodes them in place, so a held message also
// keeps the rest of its fetch response's buffer alive; Consumer.Fetch.MaxBytes
// bounds that buffer (see KafkaConfig.ConsumerConfig).
func messageSize(km *sarama.ConsumerMessage) int64 {
	n := len(km.Key) + len(km.Value)
	for _, h := range km.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return int64(n)
}
