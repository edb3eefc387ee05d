package api_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/localstack"
	"github.com/roomcast/roomcast/internal/testsupport"
	"github.com/roomcast/roomcast/projections"
)

// The shape of the benchmark's history: rooms of seedRoomEvents events with
// seedMembers members each, projected in batches of seedBatch.
const (
	seedRoomEvents = 1000
	seedMembers    = 20
	seedBatch      = 2000
)

// benchEnvInt is the positive integer in the environment variable name, or def.
func benchEnvInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s: %q is not a positive whole number", name, v)
	}
	return n
}

// benchDatabase returns the URL of the database to measure, holding the
// history seedHistory makes of n events: a fresh database on a throwaway
// cluster with default durability (as the other benchmarks use), seeded
// now; or, when ROOMCAST_BENCH_DB names one, that database, seeded if it
// holds no events and used as it is if it holds the n events (seeding a
// million takes longer than the loads; the throwaway one is seeded every
// run).
// postmaster is the pid of the throwaway cluster's server (0 for
// ROOMCAST_BENCH_DB's, which may be on another machine).
func benchDatabase(b *testing.B, n int) (url string, h *benchHistory, postmaster int) {
	b.Helper()
	ctx := context.Background()
	url = os.Getenv("ROOMCAST_BENCH_DB")
	throwaway := url == ""
	if throwaway {
		pg, err := localstack.StartPostgres(ctx, localstack.PostgresConfig{})
		if errors.Is(err, localstack.ErrPostgresNotInstalled) {
			testsupport.Require(b, false, err.Error())
		}
		if err != nil {
			b.Fatalf("postgres: %v", err)
		}
		b.Cleanup(func() { _ = pg.Stop() })
		if url, err = pg.CreateDatabase(ctx, "api_bench"); err != nil {
			b.Fatal(err)
		}
	}
	mdb, m, err := projections.OpenForMigrations(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	_, err = m.Up(ctx)
	_ = projections.Close(mdb)
	if err != nil {
		b.Fatal(err)
	}
	db, err := projections.Open(ctx, url, 4)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = projections.Close(db) }()
	var stored int64
	if err := db.Raw(`SELECT count(*) FROM events`).Scan(&stored).Error; err != nil {
		b.Fatal(err)
	}
	if throwaway {
		var backend int
		if err := db.Raw(`SELECT pg_backend_pid()`).Scan(&backend).Error; err != nil {
			b.Fatal(err)
		}
		if f := procStat(backend); len(f) > 1 {
			postmaster, _ = strconv.Atoi(f[1])
		}
	}
	rooms := max(1, n/seedRoomEvents)
	switch want := int64(rooms * (n / rooms)); stored {
	case 0:
		seedHistory(b, db, n)
		return url, readHistory(b, db), postmaster
	case want:
		benchReport(b, "ROOMCAST_BENCH_DB: reusing its %d events, seeded earlier", stored)
		return url, readHistory(b, db), postmaster
	default:
		b.Fatalf("ROOMCAST_BENCH_DB holds %d events: want none (to seed it) or the %d of API_BENCH_EVENTS=%d", stored, want, n)
	}
	return "", nil, 0
}

// benchHistory is what the database holds once seeded, read back from it.
type benchHistory struct {
	rooms     []string
	lastSeq   map[string]int64
	userRooms map[string][]string // each member's rooms
	events    int64               // rows of events
}

// seedHistory projects about n events over n/seedRoomEvents rooms through
// the worker's path (Projector.ProjectBatch, seedBatch events per batch),
// the rooms interleaved as in a topic. Each room gets seedMembers joins
// (the first three at its start, the others spread over its history) and
// otherwise ~91% message.created, ~6% edits and ~3% deletes of its live
// messages; every event gets a seq. The outbox is then emptied, as the
// dispatcher leaves it, and the tables vacuumed and analyzed.
func seedHistory(b *testing.B, db *gorm.DB, n int) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	batches := make(chan seedBatchOf, 2)
	go generateHistory(ctx, n, batches)
	p := projections.NewProjector(db, nil, nil)
	for batch := range batches {
		if batch.err != nil {
			b.Fatal(batch.err)
		}
		results, err := p.ProjectBatch(ctx, batch.items)
		if err != nil {
			b.Fatal(err)
		}
		for i, r := range results {
			if r.Err != nil || r.Outcome != projections.Applied {
				b.Fatalf("seed event %s %s: %v (%v), want applied", batch.items[i].Env.Type, batch.items[i].Env.ID, r.Outcome, r.Err)
			}
		}
	}
	projected := time.Since(start)
	// A settled history: nothing owed to Pusher, statistics known, no
	// checkpoint of the seed pending while the load runs.
	for _, q := range []string{`DELETE FROM deliveries`, `VACUUM ANALYZE`, `CHECKPOINT`} {
		if err := db.WithContext(ctx).Exec(q).Error; err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	benchReport(b, "seed: %d events projected in %v (%.0f events/s), settled in %v",
		n, projected.Round(time.Second), float64(n)/projected.Seconds(), (time.Since(start) - projected).Round(time.Second))
}

// readHistory reads the rooms, their last seqs and members back from db.
func readHistory(b *testing.B, db *gorm.DB) *benchHistory {
	b.Helper()
	h := &benchHistory{lastSeq: map[string]int64{}, userRooms: map[string][]string{}}
	if err := db.Raw(`SELECT count(*) FROM events`).Scan(&h.events).Error; err != nil {
		b.Fatal(err)
	}
	var rooms []struct {
		RoomID  string
		LastSeq int64
	}
	if err := db.Raw(`SELECT room_id, last_seq FROM rooms ORDER BY room_id`).Scan(&rooms).Error; err != nil {
		b.Fatal(err)
	}
	for _, r := range rooms {
		h.rooms = append(h.rooms, r.RoomID)
		h.lastSeq[r.RoomID] = r.LastSeq
	}
	var members []struct{ RoomID, UserID string }
	if err := db.Raw(`SELECT room_id, user_id FROM room_members ORDER BY room_id, user_id`).Scan(&members).Error; err != nil {
		b.Fatal(err)
	}
	for _, m := range members {
		h.userRooms[m.UserID] = append(h.userRooms[m.UserID], m.RoomID)
	}
	var size string
	if err := db.Raw(`SELECT pg_size_pretty(pg_database_size(current_database()))`).Scan(&size).Error; err != nil {
		b.Fatal(err)
	}
	benchReport(b, "history: %d events in %d rooms, %d memberships of %d users; the database takes %s",
		h.events, len(h.rooms), len(members), len(h.userRooms), size)
	return h
}

// seedBatchOf is a batch for the projector, or why none could be made.
type seedBatchOf struct {
	items []projections.Item
	err   error
}

// generateHistory sends the seed's events to out in batches of seedBatch,
// each event from a room picked at random among those with events left.
func generateHistory(ctx context.Context, n int, out chan<- seedBatchOf) {
	defer close(out)
	rng := rand.New(rand.NewPCG(17, 1))
	roomCount := max(1, n/seedRoomEvents)
	users := max(200, roomCount*5) // ~4 rooms per user
	active := make([]*seedRoom, roomCount)
	for i := range active {
		r := &seedRoom{id: fmt.Sprintf("room-%d", i), total: n / roomCount}
		for _, u := range rng.Perm(users)[:seedMembers] {
			r.planned = append(r.planned, fmt.Sprintf("u-%d", u))
		}
		active[i] = r
	}
	items := make([]projections.Item, 0, seedBatch)
	for len(active) > 0 {
		i := rng.IntN(len(active))
		r := active[i]
		env, err := domain.Decode(r.next(rng).JSON())
		if err != nil {
			out <- seedBatchOf{err: fmt.Errorf("seed event of %s: %w", r.id, err)}
			return
		}
		items = append(items, projections.Item{Env: env, Origin: projections.Origin{Partition: -1}})
		if r.made == r.total {
			active[i] = active[len(active)-1]
			active = active[:len(active)-1]
		}
		if len(items) == seedBatch || len(active) == 0 {
			select {
			case out <- seedBatchOf{items: items}:
			case <-ctx.Done():
				return
			}
			items = make([]projections.Item, 0, seedBatch)
		}
	}
}

// seedRoom is one room's history being made.
type seedRoom struct {
	id      string
	planned []string // its members, in the order they join
	joined  int
	live    []string // messages not deleted
	made    int      // events made
	total   int
	msgs    int // messages created
}

// seedText is cut to give messages of 20 to 260 characters.
const seedText = "Morning all, the release train leaves at ten: please have your changes merged before then, " +
	"and say here if something blocks you. The staging database was restored overnight, so expect the first " +
	"requests to be slow. Lunch is on the team today, the usual place, half past twelve. Thanks everyone!"

// next is the room's next event.
func (r *seedRoom) next(rng *rand.Rand) *chattest.Event {
	left := r.total - r.made
	r.made++
	if need := len(r.planned) - r.joined; need > 0 && (r.joined < 3 || rng.IntN(left) < need) {
		u := r.planned[r.joined]
		r.joined++
		return chattest.MemberJoined(r.id, u).With("userName", "User "+u)
	}
	member := r.planned[rng.IntN(r.joined)]
	switch k := rng.IntN(100); {
	case k < 6 && len(r.live) > 0:
		return chattest.MessageEdited(r.id, r.live[rng.IntN(len(r.live))], seedText[:20+rng.IntN(240)]).With("editorId", member)
	case k < 9 && len(r.live) > 0:
		j := rng.IntN(len(r.live))
		id := r.live[j]
		r.live[j] = r.live[len(r.live)-1]
		r.live = r.live[:len(r.live)-1]
		return chattest.MessageDeleted(r.id, id).With("deletedBy", member)
	}
	r.msgs++
	id := fmt.Sprintf("m-%s-%d", r.id, r.msgs)
	r.live = append(r.live, id)
	return chattest.MessageCreated(r.id, id, seedText[:20+rng.IntN(240)]).
		With("authorId", member).With("authorName", "User "+member).With("authorAvatar", "https://example.com/"+member+".png")
}

// checkFeedPlan explains, with the real parameters of a page of 100 in the
// middle of a room, the statement projections.RoomFeed runs (captured from
// a call, not copied), logs the plan and fails unless the events are read
// through the index events_room_seq.
func checkFeedPlan(b *testing.B, dbURL string, h *benchHistory) {
	b.Helper()
	ctx := context.Background()
	db, err := projections.Open(ctx, dbURL, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = projections.Close(db) }()
	var stmt string
	var args []any
	err = db.Callback().Row().Before("gorm:row").Register("bench:capture", func(tx *gorm.DB) {
		stmt, args = tx.Statement.SQL.String(), slices.Clone(tx.Statement.Vars)
	})
	if err != nil {
		b.Fatal(err)
	}
	room := h.rooms[len(h.rooms)/2]
	after := h.lastSeq[room] / 2
	if _, _, _, err := projections.RoomFeed(ctx, db, room, after, 100); err != nil {
		b.Fatal(err)
	}
	if !strings.Contains(stmt, "FROM events") {
		b.Fatalf("RoomFeed's statement was not captured (got %q)", stmt)
	}
	sqlDB, err := projections.SQL(db)
	if err != nil {
		b.Fatal(err)
	}
	rows, err := sqlDB.QueryContext(ctx, "EXPLAIN (ANALYZE, COSTS OFF) "+stmt, args...)
	if err != nil {
		b.Fatal(err)
	}
	var lines []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			b.Fatal(err)
		}
		lines = append(lines, l)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		b.Fatal(err)
	}
	plan := strings.Join(lines, "\n")
	benchReport(b, "the feed's plan for a page of 100 of %s after seq %d (of %d), %d events in the table:\n%s",
		room, after, h.lastSeq[room], h.events, plan)
	if !strings.Contains(plan, "Index Scan using events_room_seq on events") && !strings.Contains(plan, "Bitmap Index Scan on events_room_seq") {
		b.Fatal("the feed does not read the events through events_room_seq")
	}
	if strings.Contains(plan, "Seq Scan on events") {
		b.Fatal("the feed scans the events table")
	}
}
