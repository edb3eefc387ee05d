package projections_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/projections"
)

// workload is a random mix of every event type over a few rooms, messages
// and users, with duplicates, reused ids, unknown messages and no-ops.
func workload(seed uint64, n int) []*chattest.Event {
	rng := rand.New(rand.NewPCG(seed, seed))
	rooms := []string{"r1", "r2", "r3"}
	msg := func() string { return fmt.Sprintf("m%d", rng.IntN(12)) }
	user := func() string { return fmt.Sprintf("u%d", rng.IntN(5)) }
	room := func() string { return rooms[rng.IntN(len(rooms))] }
	var out []*chattest.Event
	for len(out) < n {
		var e *chattest.Event
		switch k := rng.IntN(20); {
		case k < 6:
			e = chattest.MessageCreated(room(), msg(), fmt.Sprintf("text %d <b>", len(out)))
		case k < 9:
			e = chattest.MessageEdited(room(), msg(), fmt.Sprintf("edit %d", len(out)))
		case k < 11:
			e = chattest.MessageDeleted(room(), msg())
		case k < 14:
			e = chattest.MemberJoined(room(), user())
		case k < 16:
			e = chattest.MemberLeft(room(), user())
		case k < 17:
			e = chattest.UserNotification([]string{user(), user(), user()}, "n")
		case k < 18:
			e = chattest.RoomsNotification([]string{room(), room()}, "all")
		case k < 19 && len(out) > 0:
			e = out[rng.IntN(len(out))] // redelivery
		case len(out) > 0:
			prev := out[rng.IntN(len(out))]
			e = chattest.MessageCreated(room(), msg(), "reused id").WithID(prev.ID) // conflict
		default:
			continue
		}
		out = append(out, e)
	}
	return out
}

type outcome struct {
	Outcome projections.Outcome
	Unknown bool
	Refused bool
}

func outcomeOf(t *testing.T, o projections.Outcome, err error) outcome {
	t.Helper()
	switch {
	case err == nil:
		return outcome{Outcome: o}
	case errors.Is(err, domain.ErrUnknownMessage):
		return outcome{Unknown: true}
	case errors.Is(err, domain.ErrUnstorable):
		return outcome{Refused: true}
	}
	t.Fatal(err)
	return outcome{}
}

// Batches of any size, optimistic or not, leave what projecting the same
// events one by one leaves (the reference, ProjectOneByOne): the same
// outcomes, rows, seqs and deliveries.
func TestBatchesMatchOneByOneProjection(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			var envs []domain.Envelope
			for _, e := range workload(seed, 300) {
				envs = append(envs, e.Envelope(t))
			}
			checkBatchesMatchOneByOne(t, seed, envs)
		})
	}
}

// Events Postgres refuses, among the others: batches split around them and
// end as projecting one by one does.
func TestBatchesSplitAroundRefusedEventsMatchOneByOneProjection(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			var envs []domain.Envelope
			for i, e := range workload(seed, 300) {
				if rng.IntN(12) == 0 {
					// A create of a message the workload edits and deletes, or a
					// notification, refused for a number in its data.
					var h *chattest.Event
					if rng.IntN(3) == 0 {
						h = chattest.UserNotification([]string{"u1"}, "refused")
					} else {
						h = chattest.MessageCreated(fmt.Sprintf("r%d", 1+rng.IntN(3)), fmt.Sprintf("m%d", rng.IntN(12)), fmt.Sprintf("refused %d", i))
					}
					envs = append(envs, hostile(t, h, fmt.Sprintf(`{"n":%de1000000}`, 1+rng.IntN(9))))
				}
				envs = append(envs, e.Envelope(t))
			}
			checkBatchesMatchOneByOne(t, seed, envs)
		})
	}
}

func checkBatchesMatchOneByOne(t *testing.T, seed uint64, envs []domain.Envelope) {
	ctx := context.Background()
	one := newFixture(t)
	var want []outcome
	for _, env := range envs {
		o, err := one.p.ProjectOneByOne(ctx, env, noKafka)
		want = append(want, outcomeOf(t, o, err))
	}

	batched := newFixture(t)
	if seed%2 == 0 {
		// Every batch optimistic: each one that meets a stored id or
		// an existing message runs again with the lookups.
		projections.SetLookUpFor(batched.p, 0)
	}
	rng := rand.New(rand.NewPCG(seed, 99))
	var got []outcome
	for start := 0; start < len(envs); {
		end := min(len(envs), start+1+rng.IntN(60))
		items := make([]projections.Item, 0, end-start)
		for _, env := range envs[start:end] {
			items = append(items, projections.Item{Env: env, Origin: noKafka})
		}
		results, err := batched.p.ProjectBatch(ctx, items)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range results {
			got = append(got, outcomeOf(t, r.Outcome, r.Err))
		}
		start = end
	}

	refused := 0
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d (%s %s): batched %+v, one by one %+v", i, envs[i].Type, envs[i].ID, got[i], want[i])
		}
		if want[i].Refused {
			refused++
		}
	}
	t.Logf("%d events, %d refused", len(envs), refused)
	for _, q := range []struct{ name, sql string }{
		{"messages", `SELECT id, room_id, seq, author_id, author_name, author_avatar, content, created_at, edited_at, edited_by, deleted_at, deleted_by, event_ids::text FROM messages ORDER BY id`},
		{"room_members", `SELECT room_id, user_id, user_name, user_avatar, joined_at FROM room_members ORDER BY room_id, user_id`},
		{"rooms", `SELECT room_id, last_seq FROM rooms WHERE last_seq > 0 ORDER BY room_id`},
		{"events", `SELECT id, type, room_id, seq, data::text, fingerprint, occurred_at FROM events ORDER BY id`},
		{"deliveries", `SELECT event_id, room_id, seq, channels::text, name, data, socket_id, truncated, parked_reason FROM deliveries ORDER BY id`},
		{"events' deliveries", `SELECT e.id, d.event_id FROM events e LEFT JOIN deliveries d ON d.id = e.delivery_id ORDER BY e.id`},
	} {
		a, b := dump(t, one.db, q.sql), dump(t, batched.db, q.sql)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s differ: one by one %d rows, batched %d rows", q.name, len(a), len(b))
			for i := range min(len(a), len(b)) {
				if !reflect.DeepEqual(a[i], b[i]) {
					t.Errorf("first difference at row %d:\n one by one %v\n batched    %v", i, a[i], b[i])
					break
				}
			}
		}
	}
}

func dump(t *testing.T, db *gorm.DB, query string) [][]any {
	t.Helper()
	rows, err := db.Raw(query).Rows()
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out [][]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				vals[i] = string(b)
			}
		}
		out = append(out, vals)
	}
	return out
}

// Two consumers may hold the same event for a moment during a rebalance.
// Whatever the interleaving, it applies once: the loser's batch fails
// (transiently) or sees a duplicate, and its retry sees a duplicate.
func TestConcurrentBatchesApplyAnEventOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for round := range 20 {
		e := chattest.UserNotification([]string{fmt.Sprintf("u-%d", round)}, "race")
		items := []projections.Item{{Env: e.Envelope(t), Origin: noKafka}}
		type res struct {
			r   []projections.Result
			err error
		}
		out := make(chan res, 2)
		for range 2 {
			go func() {
				r, err := f.p.ProjectBatch(ctx, items)
				out <- res{r, err}
			}()
		}
		applied := 0
		for range 2 {
			got := <-out
			if got.err != nil { // the transient loss: retried as the worker would
				if got.r, got.err = f.p.ProjectBatch(ctx, items); got.err != nil {
					t.Fatalf("retry: %v", got.err)
				}
			}
			switch got.r[0].Outcome {
			case projections.Applied:
				applied++
			case projections.Duplicate:
			default:
				t.Fatalf("round %d: outcome %v, want applied or duplicate", round, got.r[0].Outcome)
			}
		}
		if applied != 1 {
			t.Fatalf("round %d: applied %d times, want once", round, applied)
		}
		if n := f.count("deliveries", "event_id = ?", e.ID); n != 1 {
			t.Fatalf("round %d: %d deliveries, want 1", round, n)
		}
	}
}

// A batch that takes an id for new and then finds it recorded by a
// transaction that committed meanwhile (two consumers during a rebalance)
// fails on the primary key of events and is retried: nothing is applied
// twice, and the rival's payload stands. A batch that skipped the lookup
// (the first ones, optimistic) retries at once with it, and batches then look
// ids up for a while; a batch that looked the id up fails as a whole with a
// transient error, and its retry (the worker's) sees the id as stored.
func TestBatchLosingTheRaceForAnIDFailsAndIsRetried(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	race := func(name string) (e, other *chattest.Event, items []projections.Item, err error) {
		e = chattest.MessageCreated("r-race", "m-race-"+name, "hello")
		other = chattest.MessageCreated("r-race", "m-other-"+name, "first")
		items = []projections.Item{{Env: other.Envelope(t), Origin: noKafka}, {Env: e.Envelope(t), Origin: noKafka}}
		rival := f.db.Begin()
		if err := rival.Exec(`INSERT INTO events (id, type, source, data, fingerprint, occurred_at) VALUES (?, ?, '/rival', '{}', 'rival', now())`,
			e.ID, string(e.Type)).Error; err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := f.p.ProjectBatch(ctx, items)
			done <- err
		}()
		// The batch's insert (a COPY) waits for the rival's uncommitted key.
		waitFor(t, "the batch to wait for the rival transaction", func() bool {
			var n int64
			f.db.Raw(`SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE 'copy "events"%'`).Scan(&n)
			return n == 1
		})
		if err := rival.Commit().Error; err != nil {
			t.Fatal(err)
		}
		return e, other, items, <-done
	}
	check := func(name string, e, other *chattest.Event) {
		t.Helper()
		if n := f.count("events", "id = ?", other.ID); n != 1 {
			t.Fatalf("%s: %d rows of the batch's other event, want 1", name, n)
		}
		if n := f.count("deliveries", "event_id = ?", e.ID); n != 0 {
			t.Fatalf("%s: %d deliveries for the id the rival recorded, want 0", name, n)
		}
		if n := f.count("messages", "id = ?", "m-race-"+name); n != 0 {
			t.Fatalf("%s: the message of the id the rival recorded was applied (%d rows)", name, n)
		}
	}

	// Optimistic: the copy fails on the key, the batch retries with the lookup.
	e, other, _, err := race("optimistic")
	if err != nil {
		t.Fatalf("optimistic batch that lost the race: %v, want it retried with the lookup", err)
	}
	check("optimistic", e, other)

	// Batches now look ids up: the lookup misses the uncommitted rival.
	e, other, items, err := race("looked-up")
	if err == nil || !strings.Contains(err.Error(), "recorded concurrently") {
		t.Fatalf("batch that looked the id up and lost the race: error %v, want the transient 'recorded concurrently'", err)
	}
	if n := f.count("events", "id = ?", other.ID); n != 0 {
		t.Fatalf("the failed batch left %d rows of its other event", n)
	}
	results, err := f.p.ProjectBatch(ctx, items)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if results[0].Outcome != projections.Applied || results[1].Outcome != projections.Conflict {
		t.Fatalf("retry outcomes %v, %v; want applied, conflict (the rival's payload stands)", results[0].Outcome, results[1].Outcome)
	}
	check("looked-up", e, other)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
