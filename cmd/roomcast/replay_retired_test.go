package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/projections"
)

// `replay rebuild` refuses to lower a room's last seq (naming the room and
// -force), `-force` swaps keeping the live seq and says where the replaced
// tables are, and `replay drop-retired` drops them.
func TestReplayRebuildGuardsSeqsAndKeepsRetiredTables(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	w := s.startWorker(nil)
	events := history("rg", 3, 6)
	s.produceEvents(events...)
	s.waitCount(60*time.Second, int64(distinct(events)), `SELECT count(*) FROM events`)
	w.stop()
	// The event that gave a room its last seq, and the room's later ones,
	// no longer pass validation (as under a stricter rule).
	var room string
	var position, liveSeq int64
	if err := s.db.QueryRow(t.Context(), `SELECT room_id, position, seq FROM events WHERE seq IS NOT NULL ORDER BY room_id, seq DESC LIMIT 1`).
		Scan(&room, &position, &liveSeq); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(t.Context(), `UPDATE events SET data = jsonb_set(data, '{roomId}', '"bad room"')
		WHERE room_id = $1 AND position >= $2 AND type NOT LIKE 'chat.notification.%'`, room, position); err != nil {
		t.Fatal(err)
	}
	before := dumpState(t, s.db)

	dry := s.mustCmd(nil, "replay", "rebuild", "-dry-run")
	if !strings.Contains(dry.stdout, "would lower 1 rooms' last seq") {
		t.Errorf("the dry run does not warn of the lower seq:\n%s", dry.stdout)
	}
	r := s.cmd(t.Context(), nil, "replay", "rebuild")
	if !errors.Is(r.err, projections.ErrSeqWouldRegress) || !strings.Contains(r.err.Error(), room) || !strings.Contains(r.err.Error(), "-force") {
		t.Fatalf("rebuild lowering %s's seq: %v, want a refusal naming the room and -force\n%s", room, r.err, r.stdout)
	}
	sameDump(t, "after the refused rebuild", before, dumpState(t, s.db))

	f := s.mustCmd(nil, "replay", "rebuild", "-force")
	t.Logf("forced rebuild:\n%s", f.stdout)
	if !strings.Contains(f.stdout, "forced: 1 rooms kept their live last seq") || !strings.Contains(f.stdout, "kept in schema roomcast_retired_") {
		t.Errorf("forced rebuild summary:\n%s", f.stdout)
	}
	if got := s.mustCount(`SELECT last_seq FROM rooms WHERE room_id = $1`, room); got != liveSeq {
		t.Errorf("room %s: last_seq %d after the forced rebuild, want the live %d", room, got, liveSeq)
	}
	retired := `SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'roomcast\_retired\_%'`
	if n := s.mustCount(retired); n != 1 {
		t.Errorf("%d retired schemas after the swap, want 1", n)
	}
	if d := s.mustCmd(nil, "replay", "drop-retired", "-dry-run"); !strings.Contains(d.stdout, "roomcast_retired_") || !strings.Contains(d.stdout, "3 tables") {
		t.Errorf("drop-retired -dry-run:\n%s", d.stdout)
	}
	if n := s.mustCount(retired); n != 1 {
		t.Errorf("the dry run dropped something: %d retired schemas left", n)
	}
	if d := s.mustCmd(nil, "replay", "drop-retired"); !strings.Contains(d.stdout, "dropped 1 schemas") {
		t.Errorf("drop-retired:\n%s", d.stdout)
	}
	if n := s.mustCount(retired); n != 0 {
		t.Errorf("%d retired schemas left after drop-retired", n)
	}
}
