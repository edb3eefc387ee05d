package projections_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/projections"
)

func TestOneProcessAtATimeLeadsTheOutbox(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a, b := f.outbox, projections.NewOutbox(f.db)
	if lead, err := a.Lead(ctx); err != nil || !lead {
		t.Fatalf("first outbox: lead=%v err=%v, want to lead", lead, err)
	}
	if lead, err := b.Lead(ctx); err != nil || lead {
		t.Fatalf("second outbox: lead=%v err=%v, want not to lead while the first does", lead, err)
	}
	if lead, _ := a.Lead(ctx); !lead {
		t.Fatal("the leader lost the lead without giving it up")
	}
	a.Release()
	if lead, err := b.Lead(ctx); err != nil || !lead {
		t.Fatalf("after release: lead=%v err=%v, want the second to take over", lead, err)
	}
	b.Release()
}

func TestNotifyWakesListenersOfAnotherPool(t *testing.T) {
	f := newFixture(t)
	other, err := projections.Open(context.Background(), f.url, 2) // as another process would
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = projections.Close(other) })
	woken := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- projections.NewOutbox(other).Listen(ctx, func() {
			select {
			case woken <- struct{}{}:
			default:
			}
		}, nil)
	}()
	waitWake := func(what string) {
		t.Helper()
		select {
		case <-woken:
		case <-time.After(10 * time.Second):
			t.Fatalf("no wake-up %s", what)
		}
	}
	waitWake("at start")
	select {
	case <-woken:
		t.Error("woken without a notification")
	case <-time.After(300 * time.Millisecond):
	}
	if err := f.outbox.Notify(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitWake("after a notification from another pool")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Listen returned %v on cancel, want nil", err)
	}
}

// threeOwedTwoMarked projects three messages and marks the first two of
// their deliveries delivered; it returns the three, in order.
func (f *fixture) threeOwedTwoMarked() []domain.Delivery {
	f.t.Helper()
	for i := range 3 {
		f.project(chattest.MessageCreated("r1", chattest.IDs("m", 3)[i], "x"))
	}
	ds := f.pending()
	if err := f.outbox.MarkDelivered(context.Background(), []int64{ds[0].ID, ds[1].ID}); err != nil {
		f.t.Fatal(err)
	}
	return ds
}

func TestPurgeDeletesOnlyDeliveredRowsPastRetention(t *testing.T) {
	f := newFixture(t)
	f.outbox.KeepDelivered()
	ctx := context.Background()
	ds := f.threeOwedTwoMarked()
	f.db.Exec(`UPDATE deliveries SET delivered_at = now() - interval '2 hours' WHERE id = ?`, ds[0].ID)
	n, err := f.outbox.Purge(ctx, time.Hour, 100)
	if err != nil || n != 1 {
		t.Fatalf("purged %d (err %v), want 1: only the row delivered two hours ago", n, err)
	}
	if left := f.count("deliveries", ""); left != 2 {
		t.Errorf("deliveries left = %d, want 2 (one recently delivered, one pending)", left)
	}
	if got := f.pending(); len(got) != 1 || got[0].ID != ds[2].ID {
		t.Errorf("pending after purge = %v, want the undelivered one", got)
	}
}

// A leader whose context ends (it is stopping) keeps the lock until it
// releases it: otherwise another process could start sending while its last
// calls are still in flight.
func TestLeaderKeepsTheLockWhenItsContextEnds(t *testing.T) {
	f := newFixture(t)
	a, b := f.outbox, projections.NewOutbox(f.db)
	if lead, err := a.Lead(context.Background()); err != nil || !lead {
		t.Fatalf("lead=%v err=%v", lead, err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if lead, _ := a.Lead(cancelled); !lead {
		t.Error("a cancelled context made the leader give up")
	}
	if lead, _ := b.Lead(context.Background()); lead {
		t.Fatal("another outbox took the lock while the leader was only stopping")
	}
	a.Release()
	if lead, err := b.Lead(context.Background()); err != nil || !lead {
		t.Fatalf("after release: lead=%v err=%v", lead, err)
	}
	b.Release()
}

// A failed call counts an attempt and keeps the reason on the deliveries it
// carried that are still owed; one already delivered (kept) is left alone.
func TestRecordFailureCountsOnlyOwedDeliveries(t *testing.T) {
	f := newFixture(t)
	f.outbox.KeepDelivered()
	ds := f.threeOwedTwoMarked()
	if err := f.outbox.RecordFailure(context.Background(), []int64{ds[0].ID, ds[2].ID}, "503 Service Unavailable"); err != nil {
		t.Fatal(err)
	}
	if n := f.count("deliveries", "id = ? AND attempts = 1 AND last_error = ? AND delivered_at IS NULL", ds[2].ID, "503 Service Unavailable"); n != 1 {
		t.Errorf("the owed delivery does not count the failed attempt with its reason")
	}
	if n := f.count("deliveries", "id = ? AND attempts = 1 AND last_error IS NULL AND delivered_at IS NOT NULL", ds[0].ID); n != 1 {
		t.Errorf("the delivered delivery was changed by a failure recorded after it")
	}
}

// By default a delivery Pusher accepted is deleted; with KeepDelivered it
// stays, marked delivered. Either way it is never pending again, and what
// was not marked stays pending.
func TestMarkDeliveredDeletesUnlessKept(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep=%v", keep), func(t *testing.T) {
			f := newFixture(t)
			if keep {
				f.outbox.KeepDelivered()
			}
			ctx := context.Background()
			ds := f.threeOwedTwoMarked()
			if got := f.pending(); len(got) != 1 || got[0].ID != ds[2].ID {
				t.Errorf("pending after marking two = %v, want the third", got)
			}
			wantRows, wantDelivered := int64(1), int64(0)
			if keep {
				wantRows, wantDelivered = 3, 2
			}
			if n := f.count("deliveries", ""); n != wantRows {
				t.Errorf("outbox rows = %d, want %d", n, wantRows)
			}
			if n := f.count("deliveries", "delivered_at IS NOT NULL"); n != wantDelivered {
				t.Errorf("rows marked delivered = %d, want %d", n, wantDelivered)
			}
			// Marking again (a retry after a lost answer) changes nothing.
			if err := f.outbox.MarkDelivered(ctx, []int64{ds[0].ID}); err != nil {
				t.Fatal(err)
			}
			if n := f.count("deliveries", ""); n != wantRows {
				t.Errorf("outbox rows after marking again = %d, want %d", n, wantRows)
			}
			if n := f.count("deliveries", "delivered_at IS NOT NULL AND attempts = 1"); n != wantDelivered {
				t.Errorf("rows marked delivered after one attempt each = %d, want %d (marking again must not count another attempt)", n, wantDelivered)
			}
		})
	}
}
