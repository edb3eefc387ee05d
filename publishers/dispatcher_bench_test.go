package publishers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pusher/pusher-http-go/v5"

	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/fakepusher"
	"github.com/roomcast/roomcast/internal/localstack"
	"github.com/roomcast/roomcast/migrations"
	"github.com/roomcast/roomcast/projections"
	"github.com/roomcast/roomcast/publishers"
)

// benchStack is a Postgres with default durability (fsync and synchronous
// commit on) and a Pusher fake with an injected round trip.
type benchStack struct {
	pg     *localstack.Postgres
	pusher *fakepusher.Server
}

func newBenchStack(b *testing.B, rtt time.Duration) *benchStack {
	b.Helper()
	pg, err := localstack.StartPostgres(context.Background(), localstack.PostgresConfig{})
	if err != nil {
		b.Fatalf("postgres: %v", err)
	}
	b.Cleanup(func() { _ = pg.Stop() })
	srv, err := fakepusher.Start(fakepusher.Config{AppID: "bench", Key: "bench-key", Secret: "bench-secret"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Close() })
	srv.SetLatency(rtt)
	return &benchStack{pg: pg, pusher: srv}
}

func (s *benchStack) outbox(b *testing.B) (*projections.Outbox, *projections.Projector, func()) {
	b.Helper()
	ctx := context.Background()
	url, err := s.pg.CreateDatabase(ctx, fmt.Sprintf("bench_%d", time.Now().UnixNano()))
	if err != nil {
		b.Fatal(err)
	}
	db, err := projections.Open(ctx, url, 8)
	if err != nil {
		b.Fatal(err)
	}
	sqlDB, _ := projections.SQL(db)
	m, err := migrations.New(sqlDB)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := m.Up(ctx); err != nil {
		b.Fatal(err)
	}
	// A backlog of new-message deliveries over 200 rooms, in seq order per room.
	if err := db.Exec(`INSERT INTO events (id, type, source, room_id, seq, data, fingerprint, occurred_at)
		SELECT 'e-' || i, 'chat.message.created', '/bench', 'room-' || (i % 200), i / 200 + 1, '{}', '', now()
		FROM generate_series(0, ? - 1) AS i`, backlog).Error; err != nil {
		b.Fatal(err)
	}
	if err := db.Exec(`INSERT INTO deliveries (event_id, room_id, seq, channels, name, data)
		SELECT 'e-' || i, 'room-' || (i % 200), i / 200 + 1, ARRAY['private-room-room-' || (i % 200)], 'new-message',
		       '{"id":"m-' || i || '","content":"hello from the benchmark","authorId":"u-1","authorName":"Ada","authorAvatar":null,"createdAt":"2026-11-27T08:00:00.000Z","roomId":"room-' || (i % 200) || '","seq":' || (i / 200 + 1) || '}'
		FROM generate_series(0, ? - 1) AS i ORDER BY i`, backlog).Error; err != nil {
		b.Fatal(err)
	}
	return projections.NewOutbox(db), projections.NewProjector(db, nil, nil), func() { _ = projections.Close(db) }
}

var backlog = 100000

func (s *benchStack) client() *pusher.Client {
	return publishers.NewClient(publishers.ClientConfig{AppID: "bench", Key: "bench-key", Secret: "bench-secret",
		Host: s.pusher.Host(), MaxConns: 256})
}

// BenchmarkDispatcherBacklog drains 100,000 owed deliveries over 200 rooms
// through a Pusher with 30 ms of round trip: batched (10 events per call)
// and one call per event. Issue target: >= 20,000 events/s batched, at most
// 0.15 calls per event.
func BenchmarkDispatcherBacklog(b *testing.B) {
	stack := newBenchStack(b, 30*time.Millisecond)
	for _, tc := range []struct {
		name        string
		batchEvents int
		inFlight    int
		events      int
	}{
		{"batched", 10, 128, backlog},
		{"one-call-per-event", 1, 128, 20000},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				saved := backlog
				backlog = tc.events
				outbox, _, closeDB := stack.outbox(b)
				backlog = saved
				stack.pusher.Reset()
				d := publishers.NewDispatcher(outbox, stack.client(), publishers.DispatcherConfig{
					MaxInFlight: tc.inFlight, BatchEvents: tc.batchEvents, PollInterval: 50 * time.Millisecond,
				})
				ctx, stop := context.WithCancel(context.Background())
				done := make(chan error, 1)
				start := time.Now()
				go func() { done <- d.Run(ctx) }()
				waitCtx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				if err := stack.pusher.WaitForEvents(waitCtx, tc.events); err != nil {
					b.Fatalf("delivered %d of %d: %v", len(stack.pusher.Events()), tc.events, err)
				}
				cancel()
				elapsed := time.Since(start)
				stop()
				<-done
				bl, err := outbox.Backlog(context.Background())
				if err != nil || bl.Pending != 0 {
					b.Fatalf("outbox after the run: %+v, %v", bl, err)
				}
				closeDB()
				b.ReportMetric(float64(tc.events)/elapsed.Seconds(), "events/s")
				b.ReportMetric(float64(len(stack.pusher.Calls()))/float64(tc.events), "calls/event")
			}
		})
	}
}

// BenchmarkDispatcherLatency projects events at a steady 1,000/s (through
// the real projection, fsync on) against a Pusher with 30 ms of round trip,
// and reports the time from each projection's commit until the event reaches
// Pusher (the fake answers after the whole injected round trip, so Pusher's
// acknowledgement comes 30 ms later).
func BenchmarkDispatcherLatency(b *testing.B) {
	stack := newBenchStack(b, 30*time.Millisecond)
	const rate, seconds = 1000, 8
	for i := 0; i < b.N; i++ {
		saved := backlog
		backlog = 0
		outbox, projector, closeDB := stack.outbox(b)
		backlog = saved
		stack.pusher.Reset()
		d := publishers.NewDispatcher(outbox, stack.client(), publishers.DispatcherConfig{MaxInFlight: 128})
		projector.OnDeliveriesOwed(d.Wake)
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()

		var mu sync.Mutex
		committed := map[string]time.Time{} // message id -> commit time
		ticker := time.NewTicker(time.Second / rate)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		for n := 0; n < rate*seconds; n++ {
			<-ticker.C
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				room := fmt.Sprintf("room-%d", n%200)
				id := fmt.Sprintf("m-%d", n)
				e := chattest.MessageCreated(room, id, "hello")
				if _, err := projectOne(ctx, projector, e.Envelope(b), projections.Origin{Partition: -1}); err != nil {
					b.Error(err)
					return
				}
				mu.Lock()
				committed[id] = time.Now()
				mu.Unlock()
			}()
		}
		ticker.Stop()
		wg.Wait()
		waitCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := stack.pusher.WaitForEvents(waitCtx, rate*seconds); err != nil {
			b.Fatal(err)
		}
		cancel()
		stop()
		<-done
		closeDB()
		var lat []time.Duration
		for _, e := range stack.pusher.Events() {
			var p struct{ ID string }
			if json.Unmarshal([]byte(e.Data), &p) == nil {
				if at, ok := committed[p.ID]; ok {
					lat = append(lat, e.ReceivedAt.Sub(at))
				}
			}
		}
		slices.Sort(lat)
		if len(lat) == 0 {
			b.Fatal("no latency measured")
		}
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-commit-to-pusher-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-commit-to-pusher-ms")
	}
}
