package consumers

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// Partitions reserving and releasing charges of all sizes, a few of them
// larger than half the budget: the charges never exceed it, and every
// reservation is granted (a waiter is always woken once room is back).
func TestByteBudgetNeverExceedsAndNeverForgetsAWaiter(t *testing.T) {
	const limit, partitions, rounds = 1000, 8, 3000
	b := newByteBudget(limit)
	var wg sync.WaitGroup
	for range partitions {
		p := &keyedPartition{}
		wg.Go(func() {
			var held []int64
			for i := range rounds {
				size := rand.Int64N(200) + 1
				if i%97 == 0 {
					size = 5 * limit // larger than the whole budget
				}
				c := b.charge(size)
				for {
					ok, freed := b.reserve(p, c)
					if ok {
						break
					}
					if len(held) > 0 { // release our own first, as acks would
						b.release(held[0], held[0])
						held = held[1:]
						continue
					}
					select {
					case <-freed:
					case <-time.After(10 * time.Second):
						t.Errorf("a reservation of %d waited 10s with %d of %d charged", c, b.used.Load(), limit)
						return
					}
				}
				b.hold(c)
				if u := b.used.Load(); u > limit {
					t.Errorf("%d charged, budget %d", u, limit)
					return
				}
				held = append(held, c)
				if len(held) > 3 || rand.IntN(3) == 0 {
					b.release(held[0], held[0])
					held = held[1:]
				}
			}
			for _, c := range held {
				b.release(c, c)
			}
			b.forget(p)
		})
	}
	wg.Wait()
	if u, h := b.used.Load(), b.held.Load(); u != 0 || h != 0 {
		t.Errorf("%d charged and %d held after every release", u, h)
	}
}

// The partition at the head of the queue gets its reservation: another one
// still waiting is woken (releases stop waking it once the queue is empty,
// so it must take the head's place), and then gets its own.
func TestByteBudgetWakesTheNextWaiterWhenTheHeadIsServed(t *testing.T) {
	b := newByteBudget(100)
	p1, p2, p3 := &keyedPartition{}, &keyedPartition{}, &keyedPartition{}
	mustReserve := func(p *keyedPartition, c int64) {
		t.Helper()
		if ok, _ := b.reserve(p, c); !ok {
			t.Fatalf("reserve(%d) with %d of 100 charged: refused", c, b.used.Load())
		}
	}
	mustWait := func(p *keyedPartition, c int64) <-chan struct{} {
		t.Helper()
		ok, freed := b.reserve(p, c)
		if ok {
			t.Fatalf("reserve(%d) with %d of 100 charged, room kept for the head: granted", c, b.used.Load())
		}
		return freed
	}
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	mustReserve(p1, 50)
	woken := mustWait(p2, 50+1) // p2 heads the queue
	_ = mustWait(p3, 10)        // 50 + 10 + the 51 kept for p2 is over 100
	b.release(50, 50)
	if !closed(woken) {
		t.Fatal("a release did not wake the waiters")
	}
	freed := mustWait(p3, 50) // p3 first: 0 + 50 + 51 is over 100
	mustReserve(p2, 51)
	if !closed(freed) {
		t.Fatal("p3 still waits on a channel nothing will close once p2 got its reservation")
	}
	freed = mustWait(p3, 50) // 51 + 50: p3 is the head now
	b.release(51, 51)
	if !closed(freed) {
		t.Fatal("a release did not wake p3")
	}
	mustReserve(p3, 50)
}
