package projections_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/localstack"
	"github.com/roomcast/roomcast/projections"
)

// BenchmarkProjectDeletes projects a stream over 200 rooms in which every
// tenth event deletes a message created 305 events before, whose delivery is
// still pending (no dispatcher runs): with batches of 100 the delete comes
// batches later, with batches of 1000 mostly in the same batch. It measures
// what deletes cost a batch: redacting the stored events and the pending
// deliveries, in time and in WAL written. Postgres runs with default
// durability.
func BenchmarkProjectDeletes(b *testing.B) {
	ctx := context.Background()
	pg, err := localstack.StartPostgres(ctx, localstack.PostgresConfig{})
	if err != nil {
		b.Fatalf("postgres: %v", err)
	}
	b.Cleanup(func() { _ = pg.Stop() })
	const events, gap = 20000, 305 // a delete's message is a create (i%10 == 4)
	for _, size := range []int{100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			db := benchDatabase(b, pg, fmt.Sprintf("bench_deletes_%d", size), 2)
			p := projections.NewProjector(db, nil, nil)
			rounds := make([][]projections.Item, b.N)
			for n := range rounds {
				rounds[n] = make([]projections.Item, events)
				for i := range rounds[n] {
					var e *chattest.Event
					if j := i - gap; i%10 == 9 && j >= 0 {
						e = chattest.MessageDeleted(fmt.Sprintf("room-%d", j%200), fmt.Sprintf("m-%d-%d", n, j))
					} else {
						e = chattest.MessageCreated(fmt.Sprintf("room-%d", i%200), fmt.Sprintf("m-%d-%d", n, i), "hello from the benchmark")
					}
					rounds[n][i] = projections.Item{Env: e.Envelope(b), Origin: projections.Origin{Partition: -1}}
				}
			}
			var walBefore string
			if err := db.Raw(`SELECT pg_current_wal_lsn()::text`).Scan(&walBefore).Error; err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			start := time.Now()
			for _, items := range rounds {
				for i := 0; i < events; i += size {
					results, err := p.ProjectBatch(ctx, items[i:min(i+size, events)])
					if err != nil {
						b.Fatal(err)
					}
					for _, r := range results {
						if r.Err != nil || r.Outcome != projections.Applied {
							b.Fatalf("%v %v, want every event applied", r.Outcome, r.Err)
						}
					}
				}
			}
			b.ReportMetric(float64(events*b.N)/time.Since(start).Seconds(), "events/s")
			b.StopTimer()
			// WAL written per event: what the batches wrote, free of the
			// noise a shared machine puts on time.
			var wal float64
			if err := db.Raw(`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), ?::pg_lsn)`, walBefore).Scan(&wal).Error; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(wal/float64(events*b.N), "WAL-B/event")
		})
	}
}
