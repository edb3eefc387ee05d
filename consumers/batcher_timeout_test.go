package consumers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/consumers"
	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/testsupport"
	"github.com/roomcast/roomcast/projections"
)

// A batch whose transaction outlasts the batcher's timeout (here it waits
// for a room another transaction holds) fails transiently, to be retried as
// any failed batch, instead of holding its events, and every later event of
// their rooms, for as long as the other transaction lasts. Its retry
// commits once the room is free.
func TestBatchOverItsTimeoutFailsTransiently(t *testing.T) {
	db, _ := testsupport.Database(t, 4)
	const timeout = 2 * time.Second
	b := consumers.NewBatcher(projections.NewProjector(db, nil, nil), consumers.BatcherConfig{Timeout: timeout})
	ctx, stop := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- b.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-stopped; err != nil {
			t.Errorf("batcher stopped with %v", err)
		}
	})

	rival := db.Begin()
	t.Cleanup(func() { rival.Rollback() })
	if err := rival.Exec(`INSERT INTO rooms (room_id) VALUES ('r-held')`).Error; err != nil {
		t.Fatal(err)
	}
	e := chattest.MessageCreated("r-held", "m-1", "hello")
	answer := make(chan error, 1)
	go func() {
		_, err := b.Project(context.Background(), e.Envelope(t), projections.Origin{Partition: -1})
		answer <- err
	}()
	select {
	case err := <-answer:
		if err == nil || domain.IsPermanent(err) {
			t.Fatalf("Project = %v while the room is held; want a transient error", err)
		}
		if !strings.Contains(err.Error(), "projection timeout of 2s") {
			t.Errorf("error %q does not name the timeout", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the batch still waits for the held room a minute later: its transaction has no deadline")
	}
	if err := rival.Rollback().Error; err != nil {
		t.Fatal(err)
	}
	// Retried as the handler's retry would (a loaded machine may need more
	// than one attempt): it commits once.
	for attempt := 1; ; attempt++ {
		o, err := b.Project(context.Background(), e.Envelope(t), projections.Origin{Partition: -1})
		if err == nil {
			if o != projections.Applied && (attempt == 1 || o != projections.Duplicate) {
				t.Fatalf("retry %d: %v, want applied", attempt, o)
			}
			break
		}
		if domain.IsPermanent(err) || attempt == 10 {
			t.Fatalf("retry %d: %v", attempt, err)
		}
	}
	var n int64
	if err := db.Raw(`SELECT count(*) FROM events WHERE id = ?`, e.ID).Scan(&n).Error; err != nil || n != 1 {
		t.Fatalf("%d events stored (%v), want 1", n, err)
	}
}
