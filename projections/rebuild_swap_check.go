package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

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

// The comparison of every room's last_seq is done in two steps, so that
// the swap's locks are not held for a scan of all rooms, which grows with
// their number:
//
//  1. checkSeqsAhead, without locks, once the rebuilt tables hold every
//     event up to the cursor (all committed): it finds the rooms below
//     their live seq then.
//  2. guardSeqs, under the swap's locks, compares again only the rooms of
//     the events after that cursor. Any other room has had no event since
//     (a room's last_seq moves only with its events), so its first result
//     still holds on both sides.

// roomsBelowLive returns, sorted, the rooms whose last_seq in the tables
// rebuilt (the schema rebuilt, quoted, or "pg_temp") is below the live one,
// among rooms (nil: all). A room missing from the rebuilt tables counts as
// rebuilt at 0.
func roomsBelowLive(tx *gorm.DB, live, rebuilt string, rooms []string) ([]string, error) {
	q := `SELECT l.room_id FROM ` + qident(live) + `.rooms l LEFT JOIN ` + rebuilt + `.rooms n ON n.room_id = l.room_id
		WHERE l.last_seq > COALESCE(n.last_seq, 0)`
	var args []any
	if rooms != nil {
		q += ` AND l.room_id = ANY(?::text[])`
		args = append(args, arr(rooms))
	}
	var out []string
	if err := tx.Raw(q+` ORDER BY l.room_id`, args...).Scan(&out).Error; err != nil {
		return nil, fmt.Errorf("compare the rooms' last seq: %w", err)
	}
	return out, nil
}

// countRoomsBelowLive counts the rooms roomsBelowLive would return (a dry run).
func countRoomsBelowLive(tx *gorm.DB, live, rebuilt string) (int64, error) {
	var n int64
	err := tx.Raw(`SELECT count(*) FROM ` + qident(live) + `.rooms l LEFT JOIN ` + rebuilt + `.rooms n ON n.room_id = l.room_id
		WHERE l.last_seq > COALESCE(n.last_seq, 0)`).Scan(&n).Error
	if err != nil {
		return 0, fmt.Errorf("compare the rooms' last seq: %w", err)
	}
	return n, nil
}

// checkSeqsAhead is the first step: the rebuilt tables hold every event up
// to cursor. Forced, the rooms found are raised to their live seq at once.
func (r *rebuilder) checkSeqsAhead(ctx context.Context, cursor int64) error {
	rooms, err := roomsBelowLive(r.db.WithContext(ctx), r.live, qident(RebuildSchema), nil)
	if err != nil {
		return err
	}
	r.seqCheckedAt, r.seqsBelow = cursor, rooms
	if len(rooms) == 0 || !r.opts.Force {
		return nil
	}
	return r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error { return r.raiseSeqs(tx, rooms) })
}

// guardSeqs is the second step, under the swap's locks with every event
// applied: it refuses a swap that would lower a room's last_seq or, forced,
// raises the rooms still below. It returns how many rooms keep their live
// seq.
func (r *rebuilder) guardSeqs(tx *gorm.DB) (int64, error) {
	var since []string
	if err := tx.Raw(`SELECT DISTINCT room_id FROM `+r.qlive("events")+` WHERE position > ? AND room_id IS NOT NULL`,
		r.seqCheckedAt).Scan(&since).Error; err != nil {
		return 0, fmt.Errorf("rooms with events since the seq check: %w", err)
	}
	below := map[string]bool{}
	for _, room := range r.seqsBelow {
		below[room] = true
	}
	if len(since) > 0 {
		now, err := roomsBelowLive(tx, r.live, qident(RebuildSchema), since)
		if err != nil {
			return 0, err
		}
		if !r.opts.Force { // forced, the first ones were raised: they count
			for _, room := range since {
				delete(below, room) // the comparison of now replaces the first
			}
		}
		for _, room := range now {
			below[room] = true
		}
		if r.opts.Force && len(now) > 0 {
			if err := r.raiseSeqs(tx, now); err != nil {
				return 0, err
			}
		}
	}
	if len(below) == 0 {
		return 0, nil
	}
	if r.opts.Force {
		r.log.Warn("forced: rooms keep their live last seq, higher than the rebuilt one", slog.Int("rooms", len(below)))
		return int64(len(below)), nil
	}
	example := slices.Min(keys(below))
	var seqs struct{ Live, Rebuilt int64 }
	if err := tx.Raw(`SELECT l.last_seq AS live, COALESCE(n.last_seq, 0) AS rebuilt FROM `+r.qlive("rooms")+` l
		LEFT JOIN `+qident(RebuildSchema)+`.rooms n ON n.room_id = l.room_id WHERE l.room_id = ?`, example).Scan(&seqs).Error; err != nil {
		return 0, fmt.Errorf("compare the rooms' last seq: %w", err)
	}
	return 0, fmt.Errorf("%w: %s (for example %q: %d live, %d rebuilt); the live tables are untouched and the rebuilt ones "+
		"are kept in schema %s for inspection; run the rebuild again with -force to swap them in keeping each such room's live last seq",
		ErrSeqWouldRegress, plural(int64(len(below)), "room"), example, seqs.Live, seqs.Rebuilt, RebuildSchema)
}

// raiseSeqs sets the rebuilt last_seq of rooms to the live one where that
// is higher, adding the rooms the rebuild lacks (Force).
func (r *rebuilder) raiseSeqs(tx *gorm.DB, rooms []string) error {
	rb := qident(RebuildSchema)
	if err := tx.Exec(`UPDATE `+rb+`.rooms n SET last_seq = l.last_seq FROM `+r.qlive("rooms")+` l
		WHERE n.room_id = l.room_id AND l.last_seq > n.last_seq AND n.room_id = ANY(?::text[])`, arr(rooms)).Error; err != nil {
		return fmt.Errorf("keep the live last seq: %w", err)
	}
	// The rebuilt table is created LIKE the live one: same columns, same order.
	if err := tx.Exec(`INSERT INTO `+rb+`.rooms SELECT l.* FROM `+r.qlive("rooms")+` l
		WHERE l.room_id = ANY(?::text[]) AND NOT EXISTS (SELECT 1 FROM `+rb+`.rooms n WHERE n.room_id = l.room_id)`, arr(rooms)).Error; err != nil {
		return fmt.Errorf("keep the live last seq of rooms the rebuild lacks: %w", err)
	}
	return nil
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func plural(n int64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
