package replay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"gorm.io/gorm"

	"github.com/roomcast/roomcast/projections"
)

// NotifyConfig is what Notify needs.
type NotifyConfig struct {
	DB    *gorm.DB
	Rooms []string
	// FromSeq is the first seq to send again (0 or 1: from the first).
	FromSeq int64
	// Since and Until, when set, keep the events recorded at or after Since
	// and before Until.
	Since, Until time.Time
	DryRun       bool // count what would be owed; write nothing
	Chunk        int  // events per transaction (default 500)
	Log          *slog.Logger
}

// NotifyRoom is what Notify did (or, in a dry run, would do) for one room.
type NotifyRoom struct {
	Room    string
	LastSeq int64 // the room's last seq when Notify ended with it
	Read    int64 // events of the room in the range
	// Owed are the deliveries written to the outbox again, from seq
	// FirstSeq to LastOwedSeq.
	Owed                  int64
	FirstSeq, LastOwedSeq int64
	// StillOwed were skipped: the outbox still holds their delivery.
	StillOwed int64
	// TooLarge were skipped: too large for Pusher even with their text
	// emptied, they were parked, never sent.
	TooLarge int64
}

// NotifySummary is what Notify did, room by room.
type NotifySummary struct {
	Rooms   []NotifyRoom
	DryRun  bool
	Elapsed time.Duration
}

// Owed is the number of deliveries owed again, all rooms together.
func (s NotifySummary) Owed() int64 {
	var n int64
	for _, r := range s.Rooms {
		n += r.Owed
	}
	return n
}

// Notify writes the stored events of the rooms back into the outbox, each
// room's in seq order, as the deliveries they owed when they got their seq
// (projections.ReadFeed rebuilds them: the payloads Pusher was sent, a
// later delete's redaction applied, sent to every connection). The read
// models are not touched and nothing is sent here: the dispatcher of a
// running worker reads the outbox and sends them, after what the rooms
// owed before. Events whose delivery is still owed are skipped (it is sent
// anyway).
//
// Each chunk is written in a transaction that holds the room's row lock,
// as a projection of the room does: the rows' ids rise in the room's
// commit order, which the dispatcher keeps, and a delete of a message
// cannot pass between reading its text and writing it: the event's
// delivery_id names the new row, so a later delete redacts it while it is
// pending, as it does live deliveries.
func Notify(ctx context.Context, cfg NotifyConfig) (NotifySummary, error) {
	start := time.Now()
	log := logger(cfg.Log)
	if cfg.Chunk <= 0 {
		cfg.Chunk = 500
	}
	s := NotifySummary{DryRun: cfg.DryRun}
	var err error
	for _, room := range cfg.Rooms {
		var r NotifyRoom
		r, err = notifyRoom(ctx, cfg, room)
		s.Rooms = append(s.Rooms, r)
		log.Info("room notified again", slog.String("room_id", room), slog.Int64("owed", r.Owed),
			slog.Int64("first_seq", r.FirstSeq), slog.Int64("last_seq", r.LastOwedSeq),
			slog.Int64("still_owed", r.StillOwed), slog.Int64("too_large", r.TooLarge), slog.Bool("dry_run", cfg.DryRun))
		if err != nil {
			break
		}
	}
	s.Elapsed = time.Since(start)
	if err != nil {
		if errors.Is(err, context.Canceled) && !cfg.DryRun {
			return s, fmt.Errorf("replay notify interrupted; the chunks written stay owed (the summary lists them): %w", err)
		}
		return s, err
	}
	return s, nil
}

func notifyRoom(ctx context.Context, cfg NotifyConfig, room string) (NotifyRoom, error) {
	r := NotifyRoom{Room: room}
	rng := projections.FeedRange{AfterSeq: max(cfg.FromSeq-1, 0), Limit: cfg.Chunk, Since: cfg.Since, Until: cfg.Until, Owed: true}
	for {
		var more bool
		chunk := func(tx *gorm.DB) error {
			if !cfg.DryRun {
				// The room's row lock, as projection takes it (see Notify).
				if err := tx.Exec(`SELECT 1 FROM rooms WHERE room_id = ? FOR UPDATE`, room).Error; err != nil {
					return fmt.Errorf("lock room %q: %w", room, err)
				}
			}
			page, err := projections.ReadFeed(ctx, tx, room, rng)
			if err != nil {
				return err
			}
			more, r.LastSeq = page.More, page.LastSeq
			var ids, channels, names, data []string
			var seqs []int64
			var truncated []bool
			for i, d := range page.Deliveries {
				r.Read++
				rng.AfterSeq = d.Seq
				switch {
				case page.StillOwed[i]:
					r.StillOwed++
				case d.TooLarge:
					r.TooLarge++
				default:
					ids, seqs, channels = append(ids, d.EventID), append(seqs, d.Seq), append(channels, d.Channels[0])
					names, data, truncated = append(names, d.Name), append(data, d.Data), append(truncated, d.Truncated)
				}
			}
			if len(ids) == 0 {
				return nil
			}
			if !cfg.DryRun {
				if err := oweAgain(tx, room, ids, seqs, channels, names, data, truncated); err != nil {
					return err
				}
			}
			if r.Owed == 0 {
				r.FirstSeq = seqs[0]
			}
			r.Owed += int64(len(ids))
			r.LastOwedSeq = seqs[len(seqs)-1]
			return nil
		}
		var err error
		if cfg.DryRun {
			err = chunk(cfg.DB.WithContext(ctx))
		} else {
			err = cfg.DB.WithContext(ctx).Transaction(chunk)
		}
		if err != nil {
			return r, fmt.Errorf("replay notify of room %q after seq %d: %w", room, rng.AfterSeq, err)
		}
		if !more {
			return r, nil
		}
	}
}

// oweAgain inserts a chunk's deliveries (ids from the outbox's sequence,
// in the order given: the unnest's) and names each in its event's
// delivery_id.
func oweAgain(tx *gorm.DB, room string, eventIDs []string, seqs []int64, channels, names, data []string, truncated []bool) error {
	var rows []struct {
		ID      int64
		EventID string
	}
	if err := tx.Raw(`INSERT INTO deliveries (event_id, room_id, seq, channels, name, data, truncated)
		SELECT u.event_id, ?, u.seq, ARRAY[u.channel], u.name, u.data, u.truncated
		FROM unnest(?::text[], ?::bigint[], ?::text[], ?::text[], ?::text[], ?::boolean[]) AS u(event_id, seq, channel, name, data, truncated)
		RETURNING id, event_id`,
		room, arr(eventIDs), arr(seqs), arr(channels), arr(names), arr(data), arr(truncated)).Scan(&rows).Error; err != nil {
		return fmt.Errorf("write deliveries: %w", err)
	}
	ids, events := make([]int64, len(rows)), make([]string, len(rows))
	for i, row := range rows {
		ids[i], events[i] = row.ID, row.EventID
	}
	if err := tx.Exec(`UPDATE events AS e SET delivery_id = u.id FROM unnest(?::bigint[], ?::text[]) AS u(id, event_id)
		WHERE e.id = u.event_id`, arr(ids), arr(events)).Error; err != nil {
		return fmt.Errorf("link events to their deliveries: %w", err)
	}
	return nil
}

// arr passes xs as one Postgres array parameter.
func arr[T any](xs []T) pgtype.Array[T] {
	return pgtype.Array[T]{Elements: xs, Dims: []pgtype.ArrayDimension{{Length: int32(len(xs)), LowerBound: 1}}, Valid: true}
}
