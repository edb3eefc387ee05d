package projections_test

import (
	"errors"
	"strings"
	"testing"

	"gorm.io/gorm"

	"github.com/roomcast/roomcast/projections"
)

// lowerASeq makes the event that got a room's last seq, and the room's
// events after it, fail today's validation (a room id with a space), as a
// stricter rule would: a rebuild skips them, and the room's rebuilt
// last_seq is lower than the one clients saw. It returns the room and its
// live last_seq.
func lowerASeq(t *testing.T, f *fixture) (room string, liveSeq int64) {
	t.Helper()
	var row struct {
		RoomID   string
		Position int64
		Seq      int64
	}
	if err := f.db.Raw(`SELECT room_id, position, seq FROM events WHERE seq IS NOT NULL ORDER BY room_id, seq DESC LIMIT 1`).Scan(&row).Error; err != nil || row.RoomID == "" {
		t.Fatalf("no room event with a seq: %v", err)
	}
	if err := f.db.Exec(`UPDATE events SET data = jsonb_set(data, '{roomId}', '"bad room"')
		WHERE room_id = ? AND position >= ? AND type NOT LIKE 'chat.notification.%'`, row.RoomID, row.Position).Error; err != nil {
		t.Fatal(err)
	}
	return row.RoomID, row.Seq
}

func (f *fixture) lastSeq(room string) int64 {
	f.t.Helper()
	var n int64
	if err := f.db.Raw(`SELECT last_seq FROM rooms WHERE room_id = ?`, room).Scan(&n).Error; err != nil {
		f.t.Fatal(err)
	}
	return n
}

func (f *fixture) schemas(like string) []string {
	f.t.Helper()
	var out []string
	if err := f.db.Raw(`SELECT nspname FROM pg_namespace WHERE nspname LIKE ? ORDER BY 1`, like).Scan(&out).Error; err != nil {
		f.t.Fatal(err)
	}
	return out
}

// A rebuild whose rooms.last_seq would go down (clients saw higher seqs,
// and new events would reuse them) refuses to swap: it names how many
// rooms and one of them, leaves the live tables untouched and keeps the
// rebuilt ones for inspection. With Force it swaps, without lowering any
// last_seq.
func TestRebuildRefusesToLowerASeqUnlessForced(t *testing.T) {
	f := newFixture(t)
	projectLikeTheWorker(t, f.p, workload(11, 300), 30)
	room, liveSeq := lowerASeq(t, f)
	live := snap(t, f.db)

	_, err := projections.Rebuild(t.Context(), f.db, projections.RebuildOptions{ChunkSize: 40})
	if !errors.Is(err, projections.ErrSeqWouldRegress) {
		t.Fatalf("rebuild lowering %s's seq: %v, want ErrSeqWouldRegress", room, err)
	}
	if msg := err.Error(); !strings.Contains(msg, "1 room") || !strings.Contains(msg, room) {
		t.Errorf("the refusal does not say how many rooms and which: %v", err)
	}
	sameState(t, "after the refused swap", live, snap(t, f.db))
	var kept int64
	if err := f.db.Raw(`SELECT count(*) FROM roomcast_rebuild.rooms`).Scan(&kept).Error; err != nil || kept == 0 {
		t.Errorf("the rebuilt tables are not kept for inspection: %d rooms, %v", kept, err)
	}

	s := rebuild(t, f.db, projections.RebuildOptions{ChunkSize: 40, Force: true})
	if !s.Swapped || s.SeqsKept != 1 {
		t.Errorf("forced rebuild: swapped %v, %d rooms kept at their live seq; want a swap and 1", s.Swapped, s.SeqsKept)
	}
	if got := f.lastSeq(room); got != liveSeq {
		t.Errorf("room %s: last_seq %d after the forced rebuild, want the live %d", room, got, liveSeq)
	}
	// Other rooms are untouched by the guard.
	after := snap(t, f.db)
	if len(after["rooms"]) != len(live["rooms"]) {
		t.Errorf("rooms: %d before, %d after", len(live["rooms"]), len(after["rooms"]))
	}
}

// After a swap the replaced tables are kept (in a schema of their own per
// rebuild, named in the summary) until DropRetired drops them.
func TestRebuildKeepsTheRetiredTables(t *testing.T) {
	f := newFixture(t)
	projectLikeTheWorker(t, f.p, workload(12, 200), 20)
	live := snap(t, f.db)
	first := rebuild(t, f.db, projections.RebuildOptions{})
	if first.Retired == "" {
		t.Fatal("the summary does not say where the retired tables are")
	}
	for _, m := range []string{"rooms", "messages", "room_members"} {
		var n int64
		if err := f.db.Raw(`SELECT count(*) FROM ` + first.Retired + `.` + m).Scan(&n).Error; err != nil {
			t.Errorf("retired %s: %v", m, err)
		} else if n != int64(len(live[m])) {
			t.Errorf("retired %s holds %d rows, the live table had %d", m, n, len(live[m]))
		}
	}
	second := rebuild(t, f.db, projections.RebuildOptions{})
	if second.Retired == first.Retired {
		t.Fatalf("two rebuilds retired into the same schema %s", first.Retired)
	}
	if got := f.schemas("roomcast_retired%"); len(got) != 2 {
		t.Errorf("retired schemas after two rebuilds: %v", got)
	}
	sameState(t, "after two rebuilds", live, snap(t, f.db))

	retired, err := projections.RetiredSchemas(t.Context(), f.db)
	if err != nil || len(retired) != 2 {
		t.Fatalf("RetiredSchemas: %v, %v", retired, err)
	}
	if err := projections.DropRetired(t.Context(), f.db, retired); err != nil {
		t.Fatal(err)
	}
	if got := f.schemas("roomcast_retired%"); len(got) != 0 {
		t.Errorf("retired schemas after DropRetired: %v", got)
	}
}

// A room that falls below its live seq only through events that commit
// after the first, lock-free comparison (here: one the live side applied
// and today's rules refuse) is caught by the comparison under the swap's
// locks.
func TestRebuildCatchesASeqLoweredDuringTheSwap(t *testing.T) {
	f := newFixture(t)
	projectLikeTheWorker(t, f.p, workload(13, 200), 20)
	live := snap(t, f.db)
	var room string
	if err := f.db.Raw(`SELECT room_id FROM rooms WHERE last_seq > 0 ORDER BY room_id LIMIT 1`).Scan(&room).Error; err != nil || room == "" {
		t.Fatalf("no room: %v", err)
	}
	opts := projections.RebuildOptions{ChunkSize: 40}
	projections.AfterSeqCheck(&opts, func() {
		// What live projection would commit for an event a stricter rule
		// now refuses: the event with its seq, and the room's last seq.
		err := f.db.Transaction(func(tx *gorm.DB) error {
			if err := tx.Exec(`INSERT INTO events (id, type, source, room_id, seq, data, fingerprint, occurred_at)
				SELECT 'late-1', 'chat.member.joined', '/x', room_id, last_seq + 1,
					jsonb_build_object('roomId', 'bad room', 'userId', 'u9', 'userName', 'U', 'joinedAt', '2026-11-27T08:00:00.000Z'), 'x', now()
				FROM rooms WHERE room_id = ?`, room).Error; err != nil {
				return err
			}
			return tx.Exec(`UPDATE rooms SET last_seq = last_seq + 1 WHERE room_id = ?`, room).Error
		})
		if err != nil {
			t.Error(err)
		}
	})
	_, err := projections.Rebuild(t.Context(), f.db, opts)
	if !errors.Is(err, projections.ErrSeqWouldRegress) || !strings.Contains(err.Error(), room) {
		t.Fatalf("rebuild with a room lowered during the swap: %v, want ErrSeqWouldRegress naming %s", err, room)
	}
	after := snap(t, f.db)
	delete(after, "events")
	delete(live, "events")
	delete(after, "rooms")
	delete(live, "rooms")
	sameState(t, "after the refused swap", live, after)
}
