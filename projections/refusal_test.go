package projections_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/projections"
)

// hostile is e's envelope with an unknown data field x holding extra, as
// written. It is built past the decoder, which refuses such values now: an
// event that reaches the projection all the same (a decoder of another
// version, a replay, a server with other limits) must still end.
func hostile(t *testing.T, e *chattest.Event, extra string) domain.Envelope {
	t.Helper()
	env := e.Envelope(t)
	data := strings.TrimSuffix(string(env.Data), "}")
	env.Data = []byte(data + `,"x":` + extra + "}")
	return env
}

func items(envs ...domain.Envelope) []projections.Item {
	out := make([]projections.Item, len(envs))
	for i, env := range envs {
		out[i] = projections.Item{Env: env, Origin: noKafka}
	}
	return out
}

// wantRefused checks the error of an event Postgres refused: permanent,
// ErrUnstorable, naming Postgres' message and SQLSTATE in one short line
// without the payload.
func wantRefused(t *testing.T, err error, sqlstate, message string) {
	t.Helper()
	if !errors.Is(err, domain.ErrUnstorable) || !domain.IsPermanent(err) || errors.Is(err, domain.ErrInvalidEvent) {
		t.Fatalf("error %v: want a permanent domain.ErrUnstorable", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, message) || !strings.Contains(msg, "SQLSTATE "+sqlstate) {
		t.Errorf("reason %q: want Postgres' %q and SQLSTATE %s", msg, message, sqlstate)
	}
	if len(msg) > 300 || strings.ContainsAny(msg, "\n\r") || strings.Contains(msg, "1e1000000") || strings.Contains(msg, "[[[") {
		t.Errorf("reason %q: want one short line without the payload", msg)
	}
}

// An event whose data Postgres refuses (a number numeric cannot hold,
// SQLSTATE 22003) is refused on its own; the batch around it commits, in
// order, and its room goes on: a later edit of the message it would have
// created is an unknown message, the room's next event takes the next seq.
func TestBatchCommitsAroundAnEventPostgresRefuses(t *testing.T) {
	for _, optimistic := range []bool{true, false} {
		t.Run(fmt.Sprintf("optimistic %v", optimistic), func(t *testing.T) {
			f := newFixture(t)
			if !optimistic {
				// A stored id makes batches look their ids up first.
				e := chattest.MemberJoined("r0", "u0")
				f.expect(e, projections.Applied)
				if _, err := f.p.ProjectBatch(context.Background(), items(e.Envelope(t))); err != nil {
					t.Fatal(err)
				}
			}
			good := []*chattest.Event{
				chattest.MessageCreated("r1", "m1", "one"),
				chattest.MessageCreated("r2", "m2", "two"),
				chattest.MemberJoined("r1", "u1"),
				chattest.UserNotification([]string{"u1", "u2"}, "hi"),
				chattest.MessageCreated("r1", "m3", "three"),
			}
			bad := chattest.MessageCreated("r1", "m-bad", "never stored")
			badNote := chattest.RoomsNotification([]string{"r1", "r2"}, "never sent")
			editBad := chattest.MessageEdited("r1", "m-bad", "edit of a message never stored")
			envs := []domain.Envelope{
				good[0].Envelope(t), good[1].Envelope(t), hostile(t, bad, "1e1000000"), good[2].Envelope(t),
				editBad.Envelope(t), hostile(t, badNote, `[1,{"y":-1E+999999}]`), good[3].Envelope(t), good[4].Envelope(t),
			}
			results, err := f.p.ProjectBatch(context.Background(), items(envs...))
			if err != nil {
				t.Fatalf("ProjectBatch = %v, want the others committed", err)
			}
			for i, r := range results {
				switch i {
				case 2, 5:
					wantRefused(t, r.Err, "22003", "value overflows numeric format")
				case 4:
					if !errors.Is(r.Err, domain.ErrUnknownMessage) {
						t.Errorf("edit of the refused message: %v, want unknown message", r.Err)
					}
				default:
					if r.Err != nil || r.Outcome != projections.Applied {
						t.Errorf("event %d (%s): %v %v, want applied", i, envs[i].Type, r.Outcome, r.Err)
					}
				}
			}
			for _, e := range good {
				if n := f.count("events", "id = ?", e.ID); n != 1 {
					t.Errorf("event %s stored %d times, want once", e.ID, n)
				}
			}
			for _, e := range []*chattest.Event{bad, badNote, editBad} {
				if n := f.count("events", "id = ?", e.ID) + f.count("deliveries", "event_id = ?", e.ID); n != 0 {
					t.Errorf("refused event %s left %d rows", e.ID, n)
				}
			}
			// r1: m1, u1 joined, m3 take seqs 1, 2, 3 in batch order.
			for id, seq := range map[string]int64{good[0].ID: 1, good[2].ID: 2, good[4].ID: 3} {
				if got := f.event(id).Seq; got == nil || *got != seq {
					t.Errorf("event %s: seq %v, want %d", id, got, seq)
				}
			}
			if n := f.count("rooms", "room_id = 'r1' AND last_seq = 3"); n != 1 {
				t.Error("room r1's last_seq is not 3")
			}
			if n := f.count("messages", "id = 'm-bad'"); n != 0 {
				t.Error("the refused message was created")
			}
		})
	}
}

// Data nested deeper than Postgres' stack allows (SQLSTATE 54001). With
// the default max_stack_depth only a value nested deeper than the canonical
// form allows would get there (it refuses it first), so the database here
// runs with the smallest max_stack_depth Postgres accepts.
func TestBatchRefusesDataNestedBeyondPostgresStack(t *testing.T) {
	f := newFixture(t)
	if err := f.db.Exec(`DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET max_stack_depth = %L', current_database(), '100kB'); END $$`).Error; err != nil {
		t.Fatal(err)
	}
	db, err := projections.Open(t.Context(), f.url, 2) // new connections take the setting
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = projections.Close(db) })
	p := projections.NewProjector(db, nil, nil)
	good := chattest.MessageCreated("r1", "m1", "one")
	deep := strings.Repeat("[", 1000) + strings.Repeat("]", 1000)
	results, err := p.ProjectBatch(context.Background(), items(
		hostile(t, chattest.MemberJoined("r1", "u1"), deep), good.Envelope(t)))
	if err != nil {
		t.Fatalf("ProjectBatch = %v, want the other event committed", err)
	}
	wantRefused(t, results[0].Err, "54001", "stack depth limit exceeded")
	if results[1].Err != nil || results[1].Outcome != projections.Applied {
		t.Errorf("the other event: %v %v, want applied", results[1].Outcome, results[1].Err)
	}
}

// A server error other than a data exception (here a constraint an
// operator added, SQLSTATE 23514) that a batch of one keeps returning
// refuses that event; the others commit.
func TestBatchRefusesAnEventAServerErrorKeepsFailing(t *testing.T) {
	f := newFixture(t)
	if err := f.db.Exec(`ALTER TABLE events ADD CONSTRAINT no_evil_source CHECK (source <> '/evil')`).Error; err != nil {
		t.Fatal(err)
	}
	evil := chattest.MessageCreated("r1", "m-evil", "x").Envelope(t)
	evil.Source = "/evil"
	good := []*chattest.Event{chattest.MessageCreated("r1", "m1", "one"), chattest.MessageCreated("r2", "m2", "two")}
	results, err := f.p.ProjectBatch(context.Background(), items(good[0].Envelope(t), evil, good[1].Envelope(t)))
	if err != nil {
		t.Fatalf("ProjectBatch = %v, want the others committed", err)
	}
	wantRefused(t, results[1].Err, "23514", `violates check constraint "no_evil_source"`)
	for _, i := range []int{0, 2} {
		if results[i].Err != nil || results[i].Outcome != projections.Applied {
			t.Errorf("event %d: %v %v, want applied", i, results[i].Outcome, results[i].Err)
		}
	}
	// The reference (ProjectOneByOne), the same.
	if _, err := f.p.ProjectOneByOne(context.Background(), evil, noKafka); !errors.Is(err, domain.ErrUnstorable) {
		t.Errorf("ProjectOneByOne = %v, want ErrUnstorable", err)
	}
}

// What no event can cause (a table missing, as after a wrong migration:
// SQLSTATE 42P01) fails the batch as a whole and transiently: nothing is
// refused, and the retry commits once the schema is back.
func TestBatchWithABrokenSchemaFailsTransiently(t *testing.T) {
	f := newFixture(t)
	if err := f.db.Exec(`ALTER TABLE deliveries RENAME TO deliveries_gone`).Error; err != nil {
		t.Fatal(err)
	}
	envs := []domain.Envelope{chattest.MessageCreated("r1", "m1", "one").Envelope(t), chattest.MessageCreated("r2", "m2", "two").Envelope(t)}
	for _, batch := range [][]domain.Envelope{envs, envs[:1]} {
		results, err := f.p.ProjectBatch(context.Background(), items(batch...))
		if err == nil || domain.IsPermanent(err) {
			t.Fatalf("ProjectBatch of %d = %v, %v; want a transient error", len(batch), results, err)
		}
		if _, err := f.p.ProjectOneByOne(context.Background(), batch[0], noKafka); err == nil || domain.IsPermanent(err) {
			t.Fatalf("ProjectOneByOne = %v; want a transient error", err)
		}
	}
	if n := f.count("events", "true"); n != 0 {
		t.Fatalf("%d events stored", n)
	}
	if err := f.db.Exec(`ALTER TABLE deliveries_gone RENAME TO deliveries`).Error; err != nil {
		t.Fatal(err)
	}
	results, err := f.p.ProjectBatch(context.Background(), items(envs...))
	if err != nil || results[0].Outcome != projections.Applied || results[1].Outcome != projections.Applied {
		t.Fatalf("retry: %v, %v", results, err)
	}
}

// A batch split around a refused event stops at the first part that fails
// transiently (here its deadline, waiting for a rival's uncommitted id):
// what committed before stands, the refused event is refused, and the rest
// get the transient error, to be retried; none of them is committed.
func TestBatchSplitStopsAtATransientFailure(t *testing.T) {
	f := newFixture(t)
	first := chattest.UserNotification([]string{"u1"}, "first")
	bad := chattest.UserNotification([]string{"u2"}, "bad")
	held := chattest.UserNotification([]string{"u3"}, "held")
	rival := f.db.Begin()
	defer rival.Rollback()
	if err := rival.Exec(`INSERT INTO events (id, type, source, data, fingerprint, occurred_at) VALUES (?, ?, '/rival', '{}', 'rival', now())`,
		held.ID, string(held.Type)).Error; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // ends the wait for the held id
	defer cancel()
	results, err := f.p.ProjectBatch(ctx, items(first.Envelope(t), hostile(t, bad, "1e1000000"), held.Envelope(t)))
	if err != nil {
		t.Fatalf("ProjectBatch = %v; want results, the first part having committed", err)
	}
	if results[0].Err != nil || results[0].Outcome != projections.Applied {
		t.Errorf("first: %v %v, want applied", results[0].Outcome, results[0].Err)
	}
	wantRefused(t, results[1].Err, "22003", "value overflows numeric format")
	if results[2].Err == nil || domain.IsPermanent(results[2].Err) {
		t.Errorf("held: %v, want a transient error", results[2].Err)
	}
	if err := rival.Rollback().Error; err != nil {
		t.Fatal(err)
	}
	if n := f.count("events", "id = ?", held.ID); n != 0 {
		t.Fatalf("the held event was stored")
	}
	results, err = f.p.ProjectBatch(context.Background(), items(held.Envelope(t)))
	if err != nil || results[0].Outcome != projections.Applied {
		t.Fatalf("retry of the held event: %v, %v", results, err)
	}
}
