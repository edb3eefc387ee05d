package projections_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/localstack"
	"github.com/roomcast/roomcast/projections"
)

// BenchmarkRebuild rebuilds the read models from an events table of
// REBUILD_BENCH_EVENTS events (default 200,000: 65% creates, 12% edits, 5%
// deletes, 10% joins, 5% leaves, 3% notifications over 1,000 rooms) in a
// Postgres with default durability, and reports events/s. The history is
// projected once, the way the worker does, before the timer starts.
func BenchmarkRebuild(b *testing.B) {
	n := 200000
	if v, err := strconv.Atoi(os.Getenv("REBUILD_BENCH_EVENTS")); err == nil && v > 0 {
		n = v
	}
	ctx := context.Background()
	pg, err := localstack.StartPostgres(ctx, localstack.PostgresConfig{})
	if err != nil {
		b.Fatalf("postgres: %v", err)
	}
	b.Cleanup(func() { _ = pg.Stop() })
	db := benchDatabase(b, pg, "bench_rebuild", 6)
	p := projections.NewProjector(db, nil, nil)

	const rooms = 1000
	rng := rand.New(rand.NewPCG(1, 2))
	msgs := make([][]string, rooms)
	members := make([][]string, rooms)
	var batch []projections.Item
	inBatch := map[string]bool{}
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if _, err := p.ProjectBatch(ctx, batch); err != nil {
			b.Fatal(err)
		}
		batch, inBatch = batch[:0], map[string]bool{}
	}
	setup := time.Now()
	for i := 0; i < n; i++ {
		r := rng.IntN(rooms)
		room := fmt.Sprintf("room-%d", r)
		var e *chattest.Event
		switch k := rng.IntN(100); {
		case k < 12 && len(msgs[r]) > 0:
			e = chattest.MessageEdited(room, msgs[r][rng.IntN(len(msgs[r]))], "edited text of the benchmark")
		case k < 17 && len(msgs[r]) > 0:
			e = chattest.MessageDeleted(room, msgs[r][rng.IntN(len(msgs[r]))])
		case k < 27:
			u := fmt.Sprintf("u-%d", rng.IntN(50))
			members[r] = append(members[r], u)
			e = chattest.MemberJoined(room, u)
		case k < 32 && len(members[r]) > 0:
			e = chattest.MemberLeft(room, members[r][rng.IntN(len(members[r]))])
		case k < 35:
			e = chattest.UserNotification([]string{fmt.Sprintf("u-%d", rng.IntN(50))}, "bench")
		default:
			id := fmt.Sprintf("m-%d-%d", r, i)
			msgs[r] = append(msgs[r], id)
			e = chattest.MessageCreated(room, id, "hello from the rebuild benchmark, a message of ordinary length")
		}
		env := e.Envelope(b)
		key := domain.PartitionKey(env.Event)
		if inBatch[key] || len(batch) == 1000 {
			flush()
		}
		inBatch[key] = true
		batch = append(batch, projections.Item{Env: env, Origin: projections.Origin{Partition: -1}})
	}
	flush()
	var stored int64
	db.Raw(`SELECT count(*) FROM events`).Scan(&stored)
	b.Logf("history: %d events stored in %v", stored, time.Since(setup).Round(time.Second))

	// A settled history, as a rebuild meets it in production: not a table
	// autovacuum and the checkpointer are still busy with.
	for _, q := range []string{`VACUUM ANALYZE`, `CHECKPOINT`} {
		if err := db.Exec(q).Error; err != nil {
			b.Fatal(err)
		}
	}
	// As `roomcast replay` runs it (see cmd/roomcast/replay.go).
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	runtime.GC()
	b.ResetTimer()
	start := time.Now()
	var held time.Duration
	for range b.N {
		s, err := projections.Rebuild(ctx, db, projections.RebuildOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if s.SeqMismatches != 0 || s.Total().Read != stored {
			b.Fatalf("rebuild: %d seq mismatches, %d read of %d", s.SeqMismatches, s.Total().Read, stored)
		}
		held = max(held, s.LockHeld)
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(stored)*float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(held.Microseconds())/1000, "swap-lock-ms")
}
