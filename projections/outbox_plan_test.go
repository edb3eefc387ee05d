package projections_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/roomcast/roomcast/internal/testsupport"
	"github.com/roomcast/roomcast/projections"
)

// The statements that mark deliveries by id must find them by primary key
// whatever the planner believes about the outbox. Its statistics are missing
// or stale most of the time (it churns faster than autoanalyze runs), and a
// "delivered_at IS NULL" in the WHERE clause then made the planner read the
// whole partial index deliveries_undelivered_event (dropped since, migration
// 00007), dead entries and all, for every call. This sets up that state
// (no statistics, thousands of dead entries, a few hundred ids per call, as
// the dispatcher sends) and checks each statement's plan.
func TestOutboxStatementsProbeThePrimaryKey(t *testing.T) {
	db, _ := testsupport.Database(t, 2)
	setup := []string{
		`ALTER TABLE deliveries SET (autovacuum_enabled = off)`, // no statistics for the whole test
		`INSERT INTO deliveries (id, event_id, room_id, seq, channels, name, data)
			SELECT g, 'e-' || g, 'room-' || (g % 200), g, ARRAY['private-room-' || (g % 200)], 'new-message', repeat('x', 300)
			FROM generate_series(1, 20000) AS g`,
		`DELETE FROM deliveries WHERE id <= 17000`, // delivered: dead until vacuumed
	}
	for _, q := range setup {
		if err := db.Exec(q).Error; err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	ids := make([]int64, 300)
	messages, payloads := make([]string, 300), make([]string, 300)
	for i := range ids {
		ids[i] = int64(18000 + i)
		messages[i], payloads[i] = fmt.Sprintf("m-%d", i), `{"content":"","redacted":true}`
	}
	for _, tc := range []struct {
		name string
		sql  string
		args []any
	}{
		{"MarkDelivered", projections.MarkDeliveredSQL, []any{projections.IDArray(ids)}},
		{"MarkDelivered with KeepDelivered", projections.MarkDeliveredKeepSQL, []any{projections.IDArray(ids)}},
		{"RecordFailure", projections.RecordFailureSQL, []any{"503 Service Unavailable", projections.IDArray(ids)}},
		{"read pending deliveries to redact", projections.PendingToRedactSQL, []any{projections.TextArray(messages)}},
		{"redact pending deliveries", projections.RedactDeliveriesSQL, []any{projections.IDArray(ids), projections.TextArray(payloads)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var lines []string
			if err := db.Raw("EXPLAIN "+tc.sql, tc.args...).Scan(&lines).Error; err != nil {
				t.Fatal(err)
			}
			plan := strings.Join(lines, "\n")
			if !strings.Contains(plan, "Index Scan using deliveries_pkey") {
				t.Errorf("plan does not probe deliveries by primary key:\n%s", plan)
			}
		})
	}
}
