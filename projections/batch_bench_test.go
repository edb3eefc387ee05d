package projections_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/localstack"
	"github.com/roomcast/roomcast/migrations"
	"github.com/roomcast/roomcast/projections"
)

// BenchmarkProjectBatch projects message.created events over 200 rooms into
// a Postgres with default durability (fsync and synchronous commit on), in
// batches of the given size, one batch at a time.
func BenchmarkProjectBatch(b *testing.B) {
	ctx := context.Background()
	pg, err := localstack.StartPostgres(ctx, localstack.PostgresConfig{})
	if err != nil {
		b.Fatalf("postgres: %v", err)
	}
	b.Cleanup(func() { _ = pg.Stop() })
	for _, size := range []int{1, 100, 500, 2000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			url, err := pg.CreateDatabase(ctx, fmt.Sprintf("bench_%d_%d", size, time.Now().UnixNano()))
			if err != nil {
				b.Fatal(err)
			}
			db, err := projections.Open(ctx, url, 2)
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = projections.Close(db) }()
			sqlDB, _ := projections.SQL(db)
			m, _ := migrations.New(sqlDB)
			if _, err := m.Up(ctx); err != nil {
				b.Fatal(err)
			}
			p := projections.NewProjector(db, nil, nil)
			const events = 20000
			items := make([]projections.Item, events)
			for i := range items {
				e := chattest.MessageCreated(fmt.Sprintf("room-%d", i%200), fmt.Sprintf("m-%d-%d", b.N, i), "hello from the benchmark")
				items[i] = projections.Item{Env: e.Envelope(b), Src: projections.Source{Partition: -1}}
			}
			b.ResetTimer()
			start := time.Now()
			for n := 0; n < b.N; n++ {
				for i := 0; i < events; i += size {
					if _, err := p.ProjectBatch(ctx, items[i:min(i+size, events)]); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(events*b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}
