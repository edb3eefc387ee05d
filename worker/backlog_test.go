package worker

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/roomcast/roomcast/internal/testsupport"
	"github.com/roomcast/roomcast/projections"
)

// gauges gathers reg's unlabelled gauges and counters by name.
func gauges(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetGauge() != nil:
				out[mf.GetName()] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				out[mf.GetName()] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// The outbox gauges under a large outbox (200,000 rows) are right, and stay
// right while the outbox cannot be read: they keep the last values read (the
// oldest delivery's age goes on growing) and say how old those are and that
// reads fail. Before, each scrape read the outbox with a 2 s timeout and
// reported 0 on any error: exactly when the outbox was too big (or locked)
// to count in time, the gauges said nothing was owed.
func TestBacklogGaugesUnderALargeOutbox(t *testing.T) {
	t.Parallel()
	db, _ := testsupport.Database(t, 4)
	const rows, parked = 200000, 10
	if err := db.Exec(`INSERT INTO deliveries (event_id, room_id, seq, channels, name, data, created_at, parked_at)
		SELECT 'e-' || g, 'room-' || (g % 500), g, ARRAY['private-room-room-' || (g % 500)], 'new-message', repeat('x', 200),
		       now() - interval '1 hour' + g * interval '1 ms', CASE WHEN g > ? THEN now() END
		FROM generate_series(1, ?) AS g ORDER BY g`, rows-parked, rows).Error; err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	startBacklog(t, reg, projections.NewOutbox(db))

	var m map[string]float64
	waitUntil(t, "the gauges to read the outbox", func() bool {
		m = gauges(t, reg)
		return m["roomcast_deliveries_pending"] == rows-parked
	})
	if m["roomcast_deliveries_parked"] != parked {
		t.Errorf("roomcast_deliveries_parked = %v, want %d", m["roomcast_deliveries_parked"], parked)
	}
	if age := m["roomcast_deliveries_oldest_pending_seconds"]; age < 3590 || age > 3700 {
		t.Errorf("roomcast_deliveries_oldest_pending_seconds = %v, want about 3600", age)
	}

	// A long transaction locks the outbox (a migration, VACUUM FULL): reads
	// time out.
	tx := db.Begin()
	defer tx.Rollback()
	if err := tx.Exec(`LOCK TABLE deliveries IN ACCESS EXCLUSIVE MODE`).Error; err != nil {
		t.Fatal(err)
	}
	m = gauges(t, reg)
	if got := m["roomcast_deliveries_pending"]; got != rows-parked {
		t.Errorf("roomcast_deliveries_pending = %v while the outbox cannot be read, want the last value read, %d", got, rows-parked)
	}
	if age := m["roomcast_deliveries_oldest_pending_seconds"]; age < 3590 {
		t.Errorf("roomcast_deliveries_oldest_pending_seconds = %v while the outbox cannot be read, want the last value read (about 3600) or more", age)
	}
	waitUntil(t, "a failed read counted", func() bool {
		m = gauges(t, reg)
		return m["roomcast_deliveries_backlog_read_failures_total"] >= 1
	})
	if m["roomcast_deliveries_backlog_age_seconds"] <= 0 {
		t.Errorf("roomcast_deliveries_backlog_age_seconds = %v while reads fail, want how long ago the last one succeeded", m["roomcast_deliveries_backlog_age_seconds"])
	}

	// Half of it is delivered in that transaction; once it commits, the
	// gauges follow.
	if err := tx.Exec(`DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries ORDER BY id LIMIT ?)`, rows/2).Error; err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit().Error; err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the gauges to follow the outbox", func() bool {
		m = gauges(t, reg)
		return m["roomcast_deliveries_pending"] == rows/2-parked
	})
	if age := m["roomcast_deliveries_oldest_pending_seconds"]; age < 3490 || age >= 3590 {
		t.Errorf("roomcast_deliveries_oldest_pending_seconds = %v, want about 3500 (and the test's own duration)", age)
	}
}

// waitUntil polls cond every 20 ms until it holds, failing the test after a minute.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startBacklog registers the outbox gauges and runs them until the test
// ends, with a short deadline per read (so that a locked outbox fails fast).
func startBacklog(t *testing.T, reg *prometheus.Registry, outbox *projections.Outbox) {
	g := registerBacklog(reg, outbox, slog.New(slog.DiscardHandler))
	g.timeout, g.interval = 500*time.Millisecond, 200*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
}
