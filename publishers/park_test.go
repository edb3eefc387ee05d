package publishers_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/fakepusher"
)

// A delivery Pusher rejects for good whose park cannot be written (Postgres
// refuses the update) is not sent again in a loop: it waits to be parked,
// with backoff, while its room's later deliveries and the other rooms go
// on. Before, a failed park put it back at the head of its lane, so it went
// to Pusher again at once, was rejected, failed to park, and so on: one
// rejected call per park attempt, as fast as both answered.
func TestParkFailureDoesNotLoopAgainstPusher(t *testing.T) {
	t.Parallel()
	f := newIdleFixture(t)
	f.srv.RejectWhen(func(e fakepusher.Event) int {
		if strings.Contains(e.Data, "POISON") {
			return 413
		}
		return 0
	})
	// Postgres refuses every park, counting the attempts in a sequence
	// (which the failing transaction does not roll back).
	for _, q := range []string{
		`CREATE SEQUENCE park_attempts`,
		`CREATE FUNCTION refuse_park() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM nextval('park_attempts'); RAISE EXCEPTION 'parking refused by the test'; END $$`,
		`CREATE TRIGGER refuse_park BEFORE UPDATE ON deliveries FOR EACH ROW
			WHEN (NEW.parked_at IS NOT NULL AND OLD.parked_at IS NULL) EXECUTE FUNCTION refuse_park()`,
	} {
		if err := f.db.Exec(q).Error; err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	attempts := func() int64 {
		var n struct {
			LastValue int64
			IsCalled  bool
		}
		if err := f.db.Raw(`SELECT last_value, is_called FROM park_attempts`).Scan(&n).Error; err != nil {
			t.Fatal(err)
		}
		if !n.IsCalled {
			return 0
		}
		return n.LastValue
	}
	rejected := func() int {
		n := 0
		for _, c := range f.srv.Calls() {
			if c.Status == 413 {
				n++
			}
		}
		return n
	}

	for i := 1; i <= 3; i++ {
		content := fmt.Sprintf("a %d", i)
		if i == 2 {
			content = "POISON pill"
		}
		f.project(chattest.MessageCreated("room-a", fmt.Sprintf("a-%d", i), content))
		f.project(chattest.MessageCreated("room-b", fmt.Sprintf("b-%d", i), fmt.Sprintf("b %d", i)))
	}
	f.start()
	f.eventually("4 attempts to park the rejected delivery", func() bool { return attempts() >= 4 })
	// The batch it came in was rejected, then it alone: two calls, however
	// often its park is tried.
	if n, a := rejected(), attempts(); n > 2 {
		t.Errorf("%d calls rejected with 413 over %d failed parks: the rejected delivery is sent again after each, want at most 2 calls", n, a)
	}
	f.waitEvents(5) // everything else, room-a's later message included
	if got, want := seqs(t, f.srv, "private-room-room-a"), []int64{1, 3}; !slices.Equal(got, want) {
		t.Errorf("room-a seqs %v, want %v", got, want)
	}
	if got := seqs(t, f.srv, "private-room-room-b"); !slices.Equal(got, oneToN(3)) {
		t.Errorf("room-b seqs %v, want 1..3", got)
	}

	// Once Postgres takes the park, it is written, and nothing is owed.
	if err := f.db.Exec(`DROP TRIGGER refuse_park ON deliveries`).Error; err != nil {
		t.Fatal(err)
	}
	f.eventually("the rejected delivery parked", func() bool {
		b := f.backlog()
		return b.Pending == 0 && b.Parked == 1
	})
	if n := rejected(); n > 2 {
		t.Errorf("%d calls rejected with 413 in all, want at most 2", n)
	}
	if n := len(f.srv.Events()); n != 5 {
		t.Errorf("Pusher got %d events, want 5", n)
	}
}
