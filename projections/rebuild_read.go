package projections

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"

	"golang.org/x/sync/errgroup"
	"gorm.io/gorm"

	"github.com/roomcast/roomcast/domain"
)

// chunk is a run of stored events, read and decoded, in position order.
type chunk struct {
	items   []Item
	seqs    []*int64 // seq recorded by live projection, per item
	counts  Counts   // the invalid events of the chunk
	read    int64    // rows read (valid and invalid)
	last    int64    // position of the last row
	invalid []Problem
	// rejected are the valid events that no longer apply (set by applyChunk).
	rejected []Problem
}

// readEvents reads the events with from < position <= to in position order,
// decodes them and hands them to apply chunk by chunk (reading runs ahead of
// applying, on another connection). It returns the position of the last
// event applied.
func (r *rebuilder) readEvents(ctx context.Context, from, to int64, apply func(*chunk) error) (int64, error) {
	g, gctx := errgroup.WithContext(ctx)
	chunks := make(chan *chunk, 2)
	g.Go(func() error {
		defer close(chunks)
		cursor := from
		for cursor < to {
			ch, err := r.readChunk(r.db.WithContext(gctx), cursor, to)
			if err != nil {
				return err
			}
			if ch.read == 0 {
				return nil
			}
			cursor = ch.last
			select {
			case chunks <- ch:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	last := from
	g.Go(func() error {
		for ch := range chunks {
			if err := apply(ch); err != nil {
				return err
			}
			last = ch.last
		}
		return nil
	})
	err := g.Wait()
	return last, err
}

func (r *rebuilder) readChunk(db *gorm.DB, from, to int64) (*chunk, error) {
	rows, err := db.Raw(`SELECT position, id, type, source, subject, data::text, seq FROM events
		WHERE position > ? AND position <= ? ORDER BY position LIMIT ?`, from, to, r.opts.ChunkSize).Rows()
	if err != nil {
		return nil, fmt.Errorf("read events after position %d: %w", from, err)
	}
	defer rows.Close()
	type stored struct {
		id, typ, source string
		subject         *string
		data            []byte
		seq             *int64
		env             domain.Envelope
		err             error
	}
	raw := make([]stored, 0, r.opts.ChunkSize)
	ch := &chunk{}
	for rows.Next() {
		var e stored
		if err := rows.Scan(&ch.last, &e.id, &e.typ, &e.source, &e.subject, &e.data, &e.seq); err != nil {
			return nil, fmt.Errorf("read events after position %d: %w", from, err)
		}
		raw = append(raw, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read events after position %d: %w", from, err)
	}
	ch.read = int64(len(raw))
	// Validation is most of a rebuild's CPU: spread it over the cores.
	workers := min(runtime.GOMAXPROCS(0), max(1, len(raw)/500))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(raw); i += workers {
				e := &raw[i]
				e.env, e.err = historyEnvelope(e.id, e.typ, e.source, e.subject, e.data)
			}
		})
	}
	wg.Wait()
	ch.items, ch.seqs = make([]Item, 0, len(raw)), make([]*int64, 0, len(raw))
	noOrigin := Origin{Partition: -1}
	// An edit recorded without a seq was re-driven and too old, or met a
	// deleted message: replayed as re-driven, it does as it did (redrive.go).
	redriven := Origin{Partition: -1, Redriven: true}
	for _, e := range raw {
		if e.err != nil {
			ch.counts.of(e.typ).Read++
			ch.counts.of(e.typ).Invalid++
			ch.invalid = append(ch.invalid, Problem{EventID: e.id, Type: e.typ, Reason: e.err.Error()})
			continue
		}
		src := noOrigin
		if e.seq == nil && e.typ == string(domain.TypeMessageEdited) {
			src = redriven
		}
		ch.items = append(ch.items, Item{Env: e.env, Origin: src})
		ch.seqs = append(ch.seqs, e.seq)
	}
	return ch, nil
}

// applyChunk applies ch to the read models that tx resolves (the rebuild
// schema or temporary tables) with live projection's rules, and adds what it
// did to counts.
func applyChunk(tx *gorm.DB, ch *chunk, counts *Counts) error {
	ch.rejected = nil
	b := &batch{items: ch.items, results: make([]Result, len(ch.items)), readModelsOnly: true}
	if err := b.prepare(); err != nil {
		return err
	}
	b.reset()
	if err := b.run(tx); err != nil {
		return err
	}
	for typ, c := range ch.counts.ByType {
		counts.of(typ).add(*c)
	}
	for _, p := range ch.invalid {
		counts.problem(p)
	}
	for i, res := range b.results {
		env := ch.items[i].Env
		c := counts.of(string(env.Type))
		c.Read++
		switch {
		case res.Err != nil:
			c.Rejected++
			p := Problem{EventID: env.ID, Type: string(env.Type), Reason: res.Err.Error()}
			counts.problem(p)
			ch.rejected = append(ch.rejected, p)
		case res.Outcome == Applied:
			c.Applied++
		default:
			c.Unchanged++
		}
		// A seq that differs from the one live projection assigned means the
		// rules changed (or history was projected out of order): clients saw
		// the old seqs.
		got, had := b.seqOf[env.ID]
		if _, isRoom := env.Event.(domain.RoomEvent); isRoom && (had != (ch.seqs[i] != nil) || (had && got != *ch.seqs[i])) {
			counts.SeqMismatches++
		}
	}
	return nil
}

// bound waits for the projections in flight to commit and returns the
// highest position: every event at or below it is committed and visible.
// Positions are taken when a transaction inserts, and transactions commit in
// another order, so the highest visible position alone could hide a lower
// one still uncommitted. SHARE mode waits for the inserting transactions in
// flight and holds new ones back for the moment this transaction lasts.
func (r *rebuilder) bound(ctx context.Context) (int64, error) {
	for attempt := 1; ; attempt++ {
		p, err := r.boundOnce(ctx)
		if err == nil || !isLockTimeout(err) || attempt == 5 || ctx.Err() != nil {
			return p, err
		}
		r.log.Warn("waiting for the projections in flight took too long; trying again", slog.Int("attempt", attempt), slog.Any("error", err))
	}
}

func (r *rebuilder) boundOnce(ctx context.Context) (int64, error) {
	var p int64
	err := r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec(fmt.Sprintf(`SET LOCAL lock_timeout = %d`, r.opts.LockTimeout.Milliseconds())).Error; err != nil {
			return err
		}
		if err := tx.Exec(`LOCK TABLE ` + r.qlive("events") + ` IN SHARE MODE`).Error; err != nil {
			return err
		}
		return tx.Raw(`SELECT COALESCE(max(position), 0) FROM ` + r.qlive("events")).Scan(&p).Error
	})
	if err != nil {
		return 0, fmt.Errorf("wait for the projections in flight: %w", err)
	}
	return p, nil
}

func (r *rebuilder) countBetween(ctx context.Context, from, to int64) (int64, error) {
	var n int64
	err := r.db.WithContext(ctx).Raw(`SELECT count(*) FROM `+r.qlive("events")+` WHERE position > ? AND position <= ?`, from, to).Scan(&n).Error
	return n, err
}
