package projections_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/testsupport"
	"github.com/roomcast/roomcast/projections"
)

// The dispatcher's read of a room left behind (a room with more owed than
// its lane holds, see publishers/fairness.go) walks the pending index from
// the last delivery it holds, whatever the planner believes about the
// outbox: no statistics (autovacuum off) and thousands of dead entries, as
// under load. Never a scan of the whole table.
func TestOutboxReadOfARoomWalksThePendingIndex(t *testing.T) {
	db, _ := testsupport.Database(t, 2)
	setup := []string{
		`ALTER TABLE deliveries SET (autovacuum_enabled = off)`,
		`INSERT INTO deliveries (id, event_id, room_id, seq, channels, name, data)
			SELECT g, 'e-' || g, 'room-' || (g % 200), g, ARRAY['private-room-' || (g % 200)], 'new-message', repeat('x', 300)
			FROM generate_series(1, 20000) AS g`,
		`DELETE FROM deliveries WHERE id <= 17000`,
	}
	for _, q := range setup {
		if err := db.Exec(q).Error; err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	args := projections.RoomsArgs([]string{"room-1", "room-2"}, []int64{0, 18000}, []int32{100, 100})
	var lines []string
	if err := db.Raw("EXPLAIN "+projections.PendingInRoomsSQL, args...).Scan(&lines).Error; err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(lines, "\n")
	if !strings.Contains(plan, "Index Scan using deliveries_pending") || !strings.Contains(plan, "Index Cond: (id > r.after)") ||
		strings.Contains(plan, "Seq Scan on deliveries") || !strings.Contains(plan, "Limit") {
		t.Errorf("a room's read does not walk the pending index from its last held id:\n%s", plan)
	}
}

// Reads that skip rooms keep notifications (no room), and a room's own read
// returns its next pending deliveries after an id, up to its limit, in order.
func TestOutboxReadsSkipAndFollowRooms(t *testing.T) {
	db, _ := testsupport.Database(t, 2)
	if err := db.Exec(`INSERT INTO deliveries (id, event_id, room_id, seq, channels, name, data, parked_at)
		SELECT g, 'e-' || g, CASE WHEN g <= 5 OR g >= 10 THEN 'room-1' WHEN g <= 8 THEN 'room-2' END,
		       CASE WHEN g <= 5 THEN g WHEN g <= 8 THEN g - 5 WHEN g >= 10 THEN g - 4 END,
		       ARRAY['c-' || g], 'e', '{}', CASE WHEN g = 10 THEN now() END
		FROM generate_series(1, 11) AS g`).Error; err != nil {
		t.Fatal(err)
	}
	o := projections.NewOutbox(db)
	ids := func(ds []domain.Delivery, err error) []int64 {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, d := range ds {
			out = append(out, d.ID)
		}
		return out
	}
	if got, want := ids(o.PendingExcept(t.Context(), 100, []int64{7}, []string{"room-1"})), []int64{6, 8, 9}; !slices.Equal(got, want) {
		t.Errorf("PendingExcept skipping room-1 and id 7: %v, want %v", got, want)
	}
	if got, want := ids(o.PendingInRooms(t.Context(), []string{"room-1", "room-2"}, []int64{2, 0}, []int{2, 10})), []int64{3, 4, 6, 7, 8}; !slices.Equal(got, want) {
		t.Errorf("PendingInRooms: %v, want %v", got, want)
	}
	// Past a parked one (10) to the next pending (11).
	if got, want := ids(o.PendingInRooms(t.Context(), []string{"room-1"}, []int64{5}, []int{10})), []int64{11}; !slices.Equal(got, want) {
		t.Errorf("PendingInRooms after 5: %v, want %v", got, want)
	}
}

// The backlog gauges' cheap statement (the oldest pending delivery and the
// parked count) walks the partial indexes whatever the planner believes
// about the outbox: without statistics "parked_at IS NOT NULL" is guessed to
// match nearly every row, and the parked count read the whole table.
func TestBacklogStatementsWalkTheIndexes(t *testing.T) {
	db, _ := testsupport.Database(t, 2)
	setup := []string{
		`ALTER TABLE deliveries SET (autovacuum_enabled = off)`,
		`INSERT INTO deliveries (id, event_id, room_id, seq, channels, name, data, parked_at)
			SELECT g, 'e-' || g, 'room-' || (g % 200), g, ARRAY['private-room-' || (g % 200)], 'new-message', repeat('x', 300),
			       CASE WHEN g % 1000 = 0 THEN now() END
			FROM generate_series(1, 50000) AS g`,
		`DELETE FROM deliveries WHERE id <= 17000`,
	}
	for _, q := range setup {
		if err := db.Exec(q).Error; err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	tx := db.Begin()
	defer tx.Rollback()
	if err := tx.Exec(projections.NoSeqScanSQL).Error; err != nil {
		t.Fatal(err)
	}
	var lines []string
	if err := tx.Raw("EXPLAIN " + projections.OldestPendingSQL).Scan(&lines).Error; err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(lines, "\n")
	if strings.Contains(plan, "Seq Scan") || !strings.Contains(plan, "deliveries_parked") ||
		!strings.Contains(plan, "Index Scan using deliveries_pending") || !strings.Contains(plan, "Limit") {
		t.Errorf("the oldest pending delivery and the parked count do not walk the partial indexes:\n%s", plan)
	}
	o := projections.NewOutbox(db)
	b, err := o.Backlog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if b.Pending != 33000-33 || b.Parked != 33 || b.Oldest.IsZero() {
		t.Errorf("Backlog() = %+v, want %d pending, 33 parked and an oldest time", b, 33000-33)
	}
}
