package projections_test

import (
	"testing"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/projections"
)

// Postgres prints jsonb with a space after every colon and comma, so an
// event that arrived within the size limit can come back from the event
// store larger than it. A rebuild validates stored events again: it must
// not refuse them for their size.
func TestRebuildTakesStoredEventsOverTheSizeLimit(t *testing.T) {
	f := newFixture(t)
	ones := make([]int, 100_000)
	for i := range ones {
		ones[i] = 1
	}
	e := chattest.MemberJoined("r1", "u1").With("x", ones)
	if n := len(e.JSON()); n > domain.DefaultMaxValueBytes || n < 200_000 {
		t.Fatalf("the event takes %d bytes: want it just within the limit", n)
	}
	f.expect(e, projections.Applied)
	var printed int
	if err := f.db.Raw(`SELECT length(data::text) FROM events WHERE id = ?`, e.ID).Scan(&printed).Error; err != nil {
		t.Fatal(err)
	}
	if printed <= domain.DefaultMaxValueBytes {
		t.Fatalf("Postgres prints its data as %d characters: the test needs more than the limit", printed)
	}
	s := rebuild(t, f.db, projections.RebuildOptions{})
	for typ, c := range s.ByType {
		if c.Invalid != 0 {
			t.Errorf("%s: %d stored events refused by the rebuild, want 0 (problems %v)", typ, c.Invalid, s.Problems)
		}
	}
	if n := f.count("room_members", "room_id = 'r1' AND user_id = 'u1'"); n != 1 {
		t.Errorf("after the rebuild, u1 is not a member of r1")
	}
}
