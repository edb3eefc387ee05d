package projections_test

import (
	"context"
	"fmt"
	"gorm.io/gorm"
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
			db := benchDatabase(b, pg, fmt.Sprintf("bench_%d", size), 2)
			p := projections.NewProjector(db, nil, nil)
			const events = 20000
			// Fresh events (ids and messages) for every round: projecting the
			// same ones again would measure duplicates.
			rounds := make([][]projections.Item, b.N)
			for n := range rounds {
				rounds[n] = make([]projections.Item, events)
				for i := range rounds[n] {
					e := chattest.MessageCreated(fmt.Sprintf("room-%d", i%200), fmt.Sprintf("m-%d-%d", n, i), "hello from the benchmark")
					rounds[n][i] = projections.Item{Env: e.Envelope(b), Origin: projections.Origin{Partition: -1}}
				}
			}
			b.ResetTimer()
			start := time.Now()
			for _, items := range rounds {
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

// benchDatabase creates a fresh, migrated database on pg (a cluster with
// default durability) and opens it with up to conns connections until b ends.
func benchDatabase(b *testing.B, pg *localstack.Postgres, name string, conns int) *gorm.DB {
	b.Helper()
	ctx := context.Background()
	url, err := pg.CreateDatabase(ctx, fmt.Sprintf("%s_%d", name, time.Now().UnixNano()))
	if err != nil {
		b.Fatal(err)
	}
	db, err := projections.Open(ctx, url, conns)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = projections.Close(db) })
	sqlDB, err := projections.SQL(db)
	if err != nil {
		b.Fatal(err)
	}
	m, err := migrations.New(sqlDB)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := m.Up(ctx); err != nil {
		b.Fatal(err)
	}
	return db
}
