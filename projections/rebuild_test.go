package projections_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/testsupport"
	"github.com/roomcast/roomcast/projections"
)

// readModelQueries dump every row of every read model (rooms without
// updated_at: the time of the write, which a rebuild cannot reproduce) and
// the tables a rebuild must not touch.
var readModelQueries = []struct{ name, sql string }{
	{"messages", `SELECT id, room_id, seq, author_id, author_name, author_avatar, content, created_at, edited_at, edited_by, deleted_at, deleted_by, event_ids::text FROM messages ORDER BY id`},
	{"room_members", `SELECT room_id, user_id, user_name, user_avatar, joined_at FROM room_members ORDER BY room_id, user_id`},
	{"rooms", `SELECT room_id, last_seq FROM rooms ORDER BY room_id`},
	{"events", `SELECT position, id, type, room_id, seq, data::text, fingerprint, occurred_at, recorded_at FROM events ORDER BY position`},
	{"deliveries", `SELECT id, event_id, seq, data, delivered_at FROM deliveries ORDER BY id`},
}

type snapshot map[string][][]any

func snap(t *testing.T, db *gorm.DB) snapshot {
	t.Helper()
	s := snapshot{}
	for _, q := range readModelQueries {
		s[q.name] = dump(t, db, q.sql)
	}
	return s
}

func sameState(t *testing.T, what string, want, got snapshot) {
	t.Helper()
	for _, q := range readModelQueries {
		a, b := want[q.name], got[q.name]
		if reflect.DeepEqual(a, b) {
			continue
		}
		t.Errorf("%s: %s differ: want %d rows, got %d", what, q.name, len(a), len(b))
		for i := range max(len(a), len(b)) {
			var ra, rb []any
			if i < len(a) {
				ra = a[i]
			}
			if i < len(b) {
				rb = b[i]
			}
			if !reflect.DeepEqual(ra, rb) {
				t.Errorf("first difference at row %d:\n want %v\n got  %v", i, ra, rb)
				break
			}
		}
	}
}

// projectLikeTheWorker projects events the way the worker does: in batches
// that hold at most one event per key (room), in order.
func projectLikeTheWorker(t *testing.T, p *projections.Projector, events []*chattest.Event, maxBatch int) {
	t.Helper()
	var items []projections.Item
	keys := map[string]bool{}
	flush := func() {
		if len(items) == 0 {
			return
		}
		results, err := p.ProjectBatch(context.Background(), items)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range results {
			if r.Err != nil && !errors.Is(r.Err, domain.ErrUnknownMessage) {
				t.Fatal(r.Err)
			}
		}
		items, keys = items[:0], map[string]bool{}
	}
	for _, e := range events {
		env := e.Envelope(t)
		key := domain.PartitionKey(env.Event)
		if keys[key] || len(items) == maxBatch {
			flush()
		}
		keys[key] = true
		items = append(items, projections.Item{Env: env, Origin: noKafka})
	}
	flush()
}

func rebuild(t *testing.T, db *gorm.DB, opts projections.RebuildOptions) projections.RebuildSummary {
	t.Helper()
	s, err := projections.Rebuild(t.Context(), db, opts)
	if err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	return s
}

// A mixed workload (edits, deletes, joins, leaves, notifications,
// redeliveries, reused ids, unknown messages) projected live, then rebuilt
// from events: every row of every read model is the same, and nothing is
// owed to Pusher.
func TestRebuildEqualsLiveState(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			f := newFixture(t)
			events := workload(seed, 600)
			for _, e := range events[:150] { // one per batch
				if _, err := f.projectOne(e.Envelope(t), noKafka); err != nil && !errors.Is(err, domain.ErrUnknownMessage) {
					t.Fatal(err)
				}
			}
			projectLikeTheWorker(t, f.p, events[150:300], 40)
			// Batches with several events of a room, as the worker forms them
			// with KAFKA_MAX_IN_FLIGHT_PER_KEY above 1.
			rng := rand.New(rand.NewPCG(seed, 7))
			for start := 300; start < len(events); {
				end := min(len(events), start+1+rng.IntN(60))
				items := make([]projections.Item, 0, end-start)
				for _, e := range events[start:end] {
					items = append(items, projections.Item{Env: e.Envelope(t), Origin: noKafka})
				}
				if _, err := f.p.ProjectBatch(t.Context(), items); err != nil {
					t.Fatal(err)
				}
				start = end
			}
			live := snap(t, f.db)
			if len(live["messages"]) == 0 || len(live["room_members"]) == 0 {
				t.Fatal("the workload built no state")
			}

			s := rebuild(t, f.db, projections.RebuildOptions{ChunkSize: 37})
			sameState(t, "after rebuild", live, snap(t, f.db))
			total := s.Total()
			if !s.Swapped || total.Read != int64(len(live["events"])) || total.Invalid != 0 || total.Rejected != 0 || s.SeqMismatches != 0 {
				t.Errorf("summary: swapped %v, %+v, seq mismatches %d; want every one of %d events read, none invalid",
					s.Swapped, total, s.SeqMismatches, len(live["events"]))
			}
			for _, tc := range s.Tables {
				if tc.Added+tc.Changed+tc.Removed != 0 {
					t.Errorf("rebuild found a difference with live state: %v", tc)
				}
			}
			var schemas int64
			f.db.Raw(`SELECT count(*) FROM pg_namespace WHERE nspname IN ('roomcast_rebuild', 'roomcast_retired')`).Scan(&schemas)
			if schemas != 0 {
				t.Errorf("%d rebuild schemas left behind", schemas)
			}
		})
	}
}

// The swapped-in tables carry the live ones' index names (later migrations
// name them) and grants.
func TestRebuildKeepsIndexesAndGrants(t *testing.T) {
	f := newFixture(t)
	projectLikeTheWorker(t, f.p, workload(7, 100), 20)
	if err := f.db.Exec(`DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rc_reader') THEN CREATE ROLE rc_reader; END IF; END $$`).Error; err != nil {
		t.Fatal(err)
	}
	if err := f.db.Exec(`GRANT SELECT ON messages, room_members TO rc_reader`).Error; err != nil {
		t.Fatal(err)
	}
	state := func() [][]any {
		return dump(t, f.db, `SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()
			AND tablename IN ('rooms', 'messages', 'room_members') ORDER BY 1, 2`)
	}
	grants := func() [][]any {
		return dump(t, f.db, `SELECT table_name, privilege_type FROM information_schema.role_table_grants
			WHERE grantee = 'rc_reader' AND table_schema = current_schema() ORDER BY 1, 2`)
	}
	beforeIdx, beforeGrants := state(), grants()
	rebuild(t, f.db, projections.RebuildOptions{})
	if after := state(); !reflect.DeepEqual(beforeIdx, after) {
		t.Errorf("indexes changed:\n before %v\n after  %v", beforeIdx, after)
	}
	if after := grants(); !reflect.DeepEqual(beforeGrants, after) || len(after) != 2 {
		t.Errorf("grants changed:\n before %v\n after  %v", beforeGrants, after)
	}
}

// A dry run reports what a rebuild would change and changes nothing; the
// rebuild then repairs the damage.
func TestRebuildDryRunChangesNothing(t *testing.T) {
	f := newFixture(t)
	projectLikeTheWorker(t, f.p, workload(3, 300), 30)
	// Damage the read models as a projection bug would.
	for _, q := range []string{
		`UPDATE messages SET content = 'wrong' WHERE id = (SELECT min(id) FROM messages WHERE deleted_at IS NULL)`,
		`DELETE FROM room_members WHERE (room_id, user_id) = (SELECT room_id, user_id FROM room_members ORDER BY 1, 2 LIMIT 1)`,
		`INSERT INTO room_members (room_id, user_id, user_name, joined_at) VALUES ('r-ghost', 'u-ghost', 'Ghost', now())`,
	} {
		if err := f.db.Exec(q).Error; err != nil {
			t.Fatal(err)
		}
	}
	damaged := snap(t, f.db)

	s := rebuild(t, f.db, projections.RebuildOptions{DryRun: true, ChunkSize: 50})
	sameState(t, "after the dry run", damaged, snap(t, f.db))
	want := map[string]projections.TableChange{
		"messages":     {Table: "messages", Changed: 1},
		"room_members": {Table: "room_members", Added: 1, Removed: 1},
		"rooms":        {Table: "rooms"},
	}
	if len(s.Tables) != 3 {
		t.Fatalf("dry run reported %v", s.Tables)
	}
	for _, tc := range s.Tables {
		if tc != want[tc.Table] {
			t.Errorf("dry run: %v, want %v", tc, want[tc.Table])
		}
	}
	if !s.DryRun || s.Swapped || s.Total().Read != int64(len(damaged["events"])) {
		t.Errorf("dry run summary: %+v", s)
	}
	if s.Counts.ByType[string(domain.TypeMessageCreated)].Applied == 0 {
		t.Errorf("dry run counted no applied creates: %+v", s.Counts.ByType)
	}

	rebuild(t, f.db, projections.RebuildOptions{})
	repaired := snap(t, f.db)
	if after := rebuild(t, f.db, projections.RebuildOptions{DryRun: true}); after.Tables[0].Added+after.Tables[1].Changed+after.Tables[2].Removed != 0 {
		t.Errorf("after the rebuild a dry run still finds differences: %v", after.Tables)
	}
	for _, row := range repaired["room_members"] {
		if row[0] == "r-ghost" {
			t.Error("the rebuild kept a member no event made")
		}
	}
}

// A rebuild interrupted half-way leaves the live read models untouched, and
// the next run resumes from its cursor rather than starting over.
func TestRebuildInterruptedAndResumed(t *testing.T) {
	f := newFixture(t)
	projectLikeTheWorker(t, f.p, workload(4, 400), 25)
	live := snap(t, f.db)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stoppedAt int64
	_, err := projections.Rebuild(ctx, f.db, projections.RebuildOptions{ChunkSize: 40, TailEvents: 1, Progress: func(p projections.RebuildProgress) {
		if p.Done >= 120 && stoppedAt == 0 {
			stoppedAt = p.Done
			cancel()
		}
	}})
	if err == nil {
		t.Fatal("the interrupted rebuild returned no error")
	}
	sameState(t, "after the interruption", live, snap(t, f.db))
	var cursor int64
	if err := f.db.Raw(`SELECT cursor FROM roomcast_rebuild.rebuild_progress`).Scan(&cursor).Error; err != nil || cursor == 0 {
		t.Fatalf("no progress kept after the interruption: cursor %d, %v", cursor, err)
	}

	var firstDone int64 = -1
	s := rebuild(t, f.db, projections.RebuildOptions{ChunkSize: 40, Progress: func(p projections.RebuildProgress) {
		if firstDone < 0 {
			firstDone = p.Done
		}
	}})
	if !s.Resumed {
		t.Error("the second rebuild did not resume")
	}
	if total := s.Total(); total.Read != int64(len(live["events"])) {
		t.Errorf("resumed rebuild counted %d events read in all, want %d (each once)", total.Read, len(live["events"]))
	}
	if firstDone > 40 {
		t.Errorf("the resumed rebuild's first chunk reported %d events done: it started over", firstDone)
	}
	sameState(t, "after the resumed rebuild", live, snap(t, f.db))
}

// A rebuild that fails half-way (here: a row the rebuild schema refuses)
// leaves the live read models untouched and reports why; -restart starts
// over from fresh tables.
func TestRebuildFailureLeavesLiveUntouched(t *testing.T) {
	f := newFixture(t)
	projectLikeTheWorker(t, f.p, workload(6, 300), 30)
	live := snap(t, f.db)
	ctx, cancel := context.WithCancel(t.Context())
	_, err := projections.Rebuild(ctx, f.db, projections.RebuildOptions{ChunkSize: 20, Progress: func(p projections.RebuildProgress) {
		if p.Done >= 40 {
			cancel()
		}
	}})
	cancel()
	if err == nil {
		t.Fatal("the interrupted rebuild returned no error")
	}
	// The rest of the rebuild hits a row it cannot write.
	if err := f.db.Exec(`ALTER TABLE roomcast_rebuild.messages ADD CONSTRAINT no_edits CHECK (edited_at IS NULL) NOT VALID`).Error; err != nil {
		t.Fatal(err)
	}
	_, err = projections.Rebuild(t.Context(), f.db, projections.RebuildOptions{ChunkSize: 20})
	if err == nil || !strings.Contains(err.Error(), "no_edits") {
		t.Fatalf("rebuild over a failing table: %v, want the constraint's error", err)
	}
	sameState(t, "after the failed rebuild", live, snap(t, f.db))
	s := rebuild(t, f.db, projections.RebuildOptions{Restart: true})
	if s.Resumed {
		t.Error("-restart resumed")
	}
	sameState(t, "after the restarted rebuild", live, snap(t, f.db))
}

// A migration that runs during a rebuild makes the swap refuse (it would
// undo the migration); the live read models stay as they are.
func TestRebuildRefusesToSwapAfterAMigration(t *testing.T) {
	f := newFixture(t)
	projectLikeTheWorker(t, f.p, workload(8, 200), 20)
	live := snap(t, f.db)
	migrated := false
	_, err := projections.Rebuild(t.Context(), f.db, projections.RebuildOptions{ChunkSize: 20, Progress: func(p projections.RebuildProgress) {
		if !migrated {
			migrated = true
			if err := f.db.Exec(`INSERT INTO goose_db_version (version_id, is_applied) VALUES (99999, true)`).Error; err != nil {
				t.Error(err)
			}
		}
	}})
	if !errors.Is(err, projections.ErrSchemaChanged) {
		t.Fatalf("rebuild across a migration: %v, want ErrSchemaChanged", err)
	}
	sameState(t, "after the refused swap", live, snap(t, f.db))
	if s := rebuild(t, f.db, projections.RebuildOptions{}); s.Resumed {
		t.Error("the rebuild after the migration resumed the stale one")
	}
	sameState(t, "after the next rebuild", live, snap(t, f.db))
}

// A swap that cannot get the live tables' locks in time (a long projection
// holds them) gives up, catches up and tries again, holding nothing meanwhile.
func TestRebuildSwapRetriesWhenLocksAreBusy(t *testing.T) {
	f := newFixture(t)
	projectLikeTheWorker(t, f.p, workload(10, 150), 15)
	live := snap(t, f.db)
	tx := f.db.Begin()
	if err := tx.Exec(`LOCK TABLE rooms IN ROW EXCLUSIVE MODE`).Error; err != nil {
		t.Fatal(err)
	}
	const hold = 1000 * time.Millisecond
	released := make(chan struct{})
	go func() {
		time.Sleep(hold)
		tx.Rollback()
		close(released)
	}()
	start := time.Now()
	s := rebuild(t, f.db, projections.RebuildOptions{LockTimeout: 200 * time.Millisecond})
	<-released
	if !s.Swapped || time.Since(start) < hold {
		t.Errorf("swapped %v after %v, want a swap after the lock was released (%v)", s.Swapped, time.Since(start), hold)
	}
	sameState(t, "after the retried swap", live, snap(t, f.db))
}

// A view on a read model would stay with the old table: the rebuild
// refuses to start and names it.
func TestRebuildRefusesDependentViews(t *testing.T) {
	f := newFixture(t)
	projectLikeTheWorker(t, f.p, workload(2, 50), 10)
	if err := f.db.Exec(`CREATE VIEW visible_messages AS SELECT id, content FROM messages WHERE deleted_at IS NULL`).Error; err != nil {
		t.Fatal(err)
	}
	live := snap(t, f.db)
	_, err := projections.Rebuild(t.Context(), f.db, projections.RebuildOptions{})
	if err == nil || !strings.Contains(err.Error(), "view visible_messages") {
		t.Fatalf("rebuild under a view: %v, want a refusal naming the view", err)
	}
	sameState(t, "after the refusal", live, snap(t, f.db))
}

// Events that no longer pass validation (or no longer apply) are reported
// with their id and reason and skipped; the rebuild goes on.
func TestRebuildSkipsBadHistory(t *testing.T) {
	f := newFixture(t)
	projectLikeTheWorker(t, f.p, workload(5, 200), 20)
	live := snap(t, f.db)
	for _, q := range []string{
		// A room id that today's rules refuse.
		`INSERT INTO events (id, type, source, room_id, data, fingerprint, occurred_at) VALUES ('bad-1', 'chat.member.joined', '/x', 'r1',
			'{"roomId": "r 1", "userId": "u9", "userName": "U", "joinedAt": "2026-11-27T08:00:00.000Z"}', 'x', now())`,
		// An edit of a message that never existed.
		`INSERT INTO events (id, type, source, room_id, data, fingerprint, occurred_at) VALUES ('bad-2', 'chat.message.edited', '/x', 'r1',
			'{"roomId": "r1", "messageId": "nope", "content": "c", "editedAt": "2026-11-27T08:00:00.000Z", "editorId": "u1"}', 'x', now())`,
	} {
		if err := f.db.Exec(q).Error; err != nil {
			t.Fatal(err)
		}
	}
	s := rebuild(t, f.db, projections.RebuildOptions{ChunkSize: 30})
	total := s.Total()
	if total.Invalid != 1 || total.Rejected != 1 {
		t.Errorf("invalid %d, rejected %d; want 1 and 1", total.Invalid, total.Rejected)
	}
	reasons := map[string]string{}
	for _, p := range s.Problems {
		reasons[p.EventID] = p.Reason
	}
	if r := reasons["bad-1"]; r == "" || !strings.Contains(r, "data.roomId") {
		t.Errorf("bad-1 reported with reason %q", r)
	}
	if r := reasons["bad-2"]; !strings.Contains(r, "unknown message") {
		t.Errorf("bad-2 reported with reason %q", r)
	}
	after := snap(t, f.db)
	delete(after, "events")
	delete(live, "events")
	sameState(t, "after skipping bad history", live, after)
}

// A rebuild while live projection goes on loses nothing: events that commit
// during the build, the catch-up and the swap all end up in the rebuilt
// tables, which equal a reference built one by one.
func TestRebuildWhileLiveEventsArrive(t *testing.T) {
	db, _ := testsupport.Database(t, 12)
	p := projections.NewProjector(db, nil, nil)
	events := workload(9, 1600)
	projectLikeTheWorker(t, p, events[:800], 50)

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Add(1)
	live := make(chan int, 1)
	go func() {
		defer wg.Done()
		n := 800
		defer func() { live <- n }()
		for ; n < len(events); n += 10 {
			if ctx.Err() != nil {
				return
			}
			projectLikeTheWorker(t, p, events[n:min(n+10, len(events))], 10)
		}
	}()
	s := rebuild(t, db, projections.RebuildOptions{ChunkSize: 60, TailEvents: 30})
	cancel()
	wg.Wait()
	projected := <-live
	if projected < len(events) {
		projectLikeTheWorker(t, p, events[projected:], 50)
	}
	t.Logf("rebuild: %d events read, %d under the swap's lock held %v", s.Total().Read, s.TailEvents, s.LockHeld)

	ref := newFixture(t)
	projectLikeTheWorker(t, ref.p, events, 50)
	want, got := snap(t, ref.db), snap(t, db)
	for _, k := range []string{"events", "deliveries"} {
		delete(want, k)
		delete(got, k)
	}
	sameState(t, "rebuilt while live", want, got)
}
