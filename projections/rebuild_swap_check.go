package projections

import (
	"errors"
	"fmt"
	"log/slog"

	"gorm.io/gorm"
)

// ErrSeqWouldRegress is returned by a rebuild whose rooms.last_seq would be
// lower than the live one for some room: clients have seen the higher seqs,
// and the room's next events would be given seqs they already saw (a
// front end takes them for duplicates or a reordering). It happens when
// stored events no longer pass validation or no longer apply (a stricter
// rule, a damaged event store), or when seqs were assigned differently
// from what the rules give today. The live tables are untouched and the
// rebuilt ones stay in RebuildSchema for inspection; RebuildOptions.Force
// swaps them in anyway, keeping each such room's live last_seq.
var ErrSeqWouldRegress = errors.New("the rebuilt read models would lower rooms' last seq")

// seqRegress is what lowering the seqs would touch: how many rooms, and the
// first of them by id as an example.
type seqRegress struct {
	Rooms   int64
	RoomID  string
	Live    int64
	Rebuilt int64
}

// findSeqRegress compares every room's last_seq in the tables rebuilt (the
// schema rebuilt, already quoted, or "pg_temp") with the live one. Run under
// the swap's locks, nothing can move either side meanwhile. A room missing
// from the rebuilt tables counts as rebuilt at 0.
func findSeqRegress(tx *gorm.DB, live, rebuilt string) (seqRegress, error) {
	var r seqRegress
	err := tx.Raw(`SELECT count(*) OVER () AS rooms, l.room_id, l.last_seq AS live, COALESCE(n.last_seq, 0) AS rebuilt
		FROM ` + qident(live) + `.rooms l LEFT JOIN ` + rebuilt + `.rooms n ON n.room_id = l.room_id
		WHERE l.last_seq > COALESCE(n.last_seq, 0) ORDER BY l.room_id LIMIT 1`).Scan(&r).Error
	if err != nil {
		return r, fmt.Errorf("compare the rooms' last seq: %w", err)
	}
	return r, nil
}

// guardSeqs refuses a swap that would lower a room's last_seq, or, forced,
// raises the rebuilt last_seq to the live one where the live one is higher
// (adding the rooms the rebuild lacks), so that no room's next event reuses
// a seq clients saw. It returns how many rooms kept their live seq.
func (r *rebuilder) guardSeqs(tx *gorm.DB) (int64, error) {
	rb := qident(RebuildSchema)
	reg, err := findSeqRegress(tx, r.live, rb)
	if err != nil || reg.Rooms == 0 {
		return 0, err
	}
	if !r.opts.Force {
		return 0, fmt.Errorf("%w: %s (for example %q: %d live, %d rebuilt); the live tables are untouched and the rebuilt ones "+
			"are kept in schema %s for inspection; run the rebuild again with -force to swap them in keeping each such room's live last seq",
			ErrSeqWouldRegress, plural(reg.Rooms, "room"), reg.RoomID, reg.Live, reg.Rebuilt, RebuildSchema)
	}
	if err := tx.Exec(`UPDATE ` + rb + `.rooms n SET last_seq = l.last_seq FROM ` + r.qlive("rooms") + ` l
		WHERE n.room_id = l.room_id AND l.last_seq > n.last_seq`).Error; err != nil {
		return 0, fmt.Errorf("keep the live last seq: %w", err)
	}
	// The rebuilt table is created LIKE the live one: same columns, same order.
	if err := tx.Exec(`INSERT INTO ` + rb + `.rooms SELECT l.* FROM ` + r.qlive("rooms") + ` l
		WHERE l.last_seq > 0 AND NOT EXISTS (SELECT 1 FROM ` + rb + `.rooms n WHERE n.room_id = l.room_id)`).Error; err != nil {
		return 0, fmt.Errorf("keep the live last seq of rooms the rebuild lacks: %w", err)
	}
	r.log.Warn("forced: rooms keep their live last seq, higher than the rebuilt one", slog.Int64("rooms", reg.Rooms),
		slog.String("example_room", reg.RoomID), slog.Int64("live_seq", reg.Live), slog.Int64("rebuilt_seq", reg.Rebuilt))
	return reg.Rooms, nil
}

func plural(n int64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
