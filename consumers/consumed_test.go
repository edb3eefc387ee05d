package consumers_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/roomcast/roomcast/consumers"
	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/projections"
)

// flakyProjector fails one event with a transient error, what a refused
// Postgres connection returns (its text holds the DSN's user, database and
// host), its first failures attempts or, with failures < 0, until released;
// the other events go to next.
type flakyProjector struct {
	next     consumers.Projector
	id       string
	mu       sync.Mutex
	failures int
	attempts []time.Time // when each attempt at id began
}

var errRefused = fmt.Errorf("project a batch of 1 events: failed to connect to `user=alice database=chat`: 10.0.0.5:5432 (db.internal): %w",
	&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})

func (f *flakyProjector) Project(ctx context.Context, env domain.Envelope, src projections.Origin) (projections.Outcome, error) {
	if env.ID == f.id {
		f.mu.Lock()
		f.attempts = append(f.attempts, time.Now())
		fail := f.failures < 0 || len(f.attempts) <= f.failures
		f.mu.Unlock()
		if fail {
			return 0, errRefused
		}
	}
	return f.next.Project(ctx, env, src)
}

func (f *flakyProjector) attempt(i int) (time.Time, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i < len(f.attempts) {
		return f.attempts[i], len(f.attempts)
	}
	return time.Time{}, len(f.attempts)
}

func (f *flakyProjector) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures = 0
}

// An event that fails transiently, more often than one delivery retries it
// (so it is nacked and delivered again), then succeeds, is counted once as
// consumed.
func TestConsumedOnceAcrossRetriesAndRedeliveries(t *testing.T) {
	env := newBatchEnv(t, 1)
	records, count := someRooms([]string{"room-a", "room-b"}, 5)
	flaky := &flakyProjector{id: records[2].id, failures: 12} // room-a's second event
	if err := env.produce(records); err != nil {
		t.Fatal(err)
	}
	n := env.startConsumer(func(next consumers.Projector) consumers.Projector { flaky.next = next; return flaky },
		func(c *consumers.Config) { c.RetryMaxInterval = 10 * time.Millisecond })
	batchWaitFor(t, 60*time.Second, "every event projected", func() bool { return env.countEvents() == len(records) },
		func() string {
			_, a := flaky.attempt(0)
			return fmt.Sprintf("%d of %d projected, %d attempts", env.countEvents(), len(records), a)
		})
	if _, a := flaky.attempt(0); a != 13 {
		t.Errorf("%d attempts at the flaky event, want 13 (12 failures, across a nack)", a)
	}
	if got := n.metric(t, "roomcast_events_consumed_total"); got != float64(count["room-a"]+count["room-b"]) {
		t.Errorf("roomcast_events_consumed_total = %v, want %d: each message once", got, len(records))
	}
}
