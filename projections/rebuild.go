package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"gorm.io/gorm"
)

// RebuildSchema is the schema a rebuild builds the read models in before it
// swaps them for the live ones. It also holds the rebuild's progress, so that
// an interrupted rebuild resumes where it stopped.
const RebuildSchema = "roomcast_rebuild"

// rebuildLockKey is the advisory lock held by the one rebuild that may run on
// a database at a time ("rcrebld" in ASCII).
const rebuildLockKey int64 = 0x72637265626c64

// RebuildOptions tunes Rebuild; zero values take the defaults.
type RebuildOptions struct {
	// ChunkSize is how many events one transaction applies (default 10000).
	ChunkSize int
	// DryRun builds into temporary tables, compares them with the live ones
	// and changes nothing.
	DryRun bool
	// Restart discards an interrupted rebuild instead of resuming it.
	Restart bool
	// TailEvents: catch-up rounds go on until fewer events than this arrived
	// during the last one; then the rest is applied under the swap's lock
	// (default 5000).
	TailEvents int
	// LockTimeout bounds how long the swap (and each catch-up bound) waits
	// for the live tables' locks before it gives up, catches up again and
	// retries (default 1s). Projections that arrive meanwhile queue behind
	// the request, so it is also the longest a waiting swap holds them back.
	LockTimeout time.Duration
	// Force swaps even when a room's rebuilt last_seq is lower than the
	// live one (ErrSeqWouldRegress otherwise); such a room keeps its live
	// last_seq.
	Force bool
	// Progress, if set, is called after every chunk.
	Progress func(RebuildProgress)
	Log      *slog.Logger

	afterSeqCheck func() // tests: runs between the two steps of the seq check
}

func (o *RebuildOptions) setDefaults() {
	if o.ChunkSize <= 0 {
		o.ChunkSize = 10000
	}
	if o.TailEvents <= 0 {
		o.TailEvents = 5000
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// RebuildProgress is where a rebuild is: Done of about Total events.
type RebuildProgress struct {
	Phase string // "building", "catching up", "swapping", "comparing"
	Done  int64
	Total int64
}

// RebuildSummary is what a rebuild did (or, dry, would do).
type RebuildSummary struct {
	Counts
	DryRun  bool
	Resumed bool // continued an interrupted rebuild (Counts include its earlier work)
	Swapped bool
	// Tables is how the rebuilt read models differ from the live ones (a
	// dry run only: while live projection runs, a comparison at any other
	// moment would count its progress as differences).
	Tables []TableChange
	// LockHeld is how long the swap held the live tables' locks (live
	// projection waits meanwhile).
	LockHeld time.Duration
	// TailEvents were applied under that lock.
	TailEvents int64
	// SeqsKept is how many rooms kept their live last_seq, higher than the
	// rebuilt one (Force).
	SeqsKept int64
	// SeqsWouldLower (a dry run) is how many rooms' last_seq the rebuilt
	// tables would lower: a rebuild would refuse to swap them without Force.
	SeqsWouldLower int64
	// Retired is the schema that keeps the replaced tables (see RetiredPrefix).
	Retired string
	Elapsed time.Duration
}

// swapAttempts bounds the swaps tried when the live tables' locks are not
// granted within LockTimeout (live projection is never held back longer
// than that by one attempt).
const swapAttempts = 10

// maxCatchUpRounds bounds the catch-up rounds before the swap.
const maxCatchUpRounds = 20

// ErrSchemaChanged is returned when migrations ran during a rebuild; the
// next rebuild starts over.
var ErrSchemaChanged = errors.New("the schema changed")

// ErrRebuildRunning is returned when another rebuild holds the database's rebuild lock.
var ErrRebuildRunning = errors.New("another rebuild is running on this database")

// Rebuild rebuilds the read models (messages, room_members, rooms) from the
// events table with the projection rules of live projection, and sends
// nothing to Pusher (no delivery is written).
//
// It is safe while `roomcast run` projects: it builds into RebuildSchema in
// transactions of ChunkSize events, committing its cursor with each, then
// catches up with the events that arrived meanwhile, and finally, in one
// transaction, locks the live read models and events in EXCLUSIVE mode (live
// projection waits; readers do not), applies the last events and swaps the
// tables (ALTER TABLE ... SET SCHEMA), keeping index names and grants. A
// rebuild that fails or is interrupted leaves the live tables untouched and
// resumes from its cursor when run again (unless opts.Restart).
//
// An event of history that no longer passes validation, or no longer applies
// (an edit of an unknown message), is counted, logged with its id and reason
// and skipped.
func Rebuild(ctx context.Context, db *gorm.DB, opts RebuildOptions) (RebuildSummary, error) {
	opts.setDefaults()
	start := time.Now()
	r := &rebuilder{db: db, opts: opts, log: opts.Log}
	if err := db.WithContext(ctx).Raw(`SELECT current_schema()`).Scan(&r.live).Error; err != nil {
		return RebuildSummary{}, fmt.Errorf("read the live schema: %w", err)
	}
	var (
		s   RebuildSummary
		err error
	)
	if opts.DryRun {
		s, err = r.dryRun(ctx)
	} else {
		s, err = r.rebuild(ctx)
	}
	s.Elapsed = time.Since(start)
	return s, err
}

type rebuilder struct {
	db      *gorm.DB
	opts    RebuildOptions
	log     *slog.Logger
	live    string // the live tables' schema
	version int64  // the migration the rebuild schema was made for

	counts Counts
	done   int64 // events applied by this run
	total  int64
	phase  string

	seqsKept int64  // rooms the swap left at their live last_seq (Force)
	retired  string // the schema the swap moved the live tables to

	seqCheckedAt int64    // the cursor when the rooms' seqs were first compared
	seqsBelow    []string // the rooms below their live seq then (rebuild_swap_check.go)
}

func (r *rebuilder) report() {
	if r.opts.Progress != nil {
		r.opts.Progress(RebuildProgress{Phase: r.phase, Done: r.done, Total: max(r.total, r.done)})
	}
}

func (r *rebuilder) logProblems(ch *chunk) {
	for _, p := range ch.invalid {
		r.log.Warn("event in history no longer passes validation: skipped",
			slog.String("event_id", p.EventID), slog.String("type", p.Type), slog.String("reason", p.Reason))
	}
	for _, p := range ch.rejected {
		r.log.Warn("event in history no longer applies: skipped",
			slog.String("event_id", p.EventID), slog.String("type", p.Type), slog.String("reason", p.Reason))
	}
}

func (r *rebuilder) qlive(table string) string { return qident(r.live) + "." + qident(table) }

// rebuild builds the read models in RebuildSchema, catches up and swaps
// them in (see Rebuild).
func (r *rebuilder) rebuild(ctx context.Context) (RebuildSummary, error) {
	s := RebuildSummary{}
	unlock, err := r.lockRebuild(ctx)
	if err != nil {
		return s, err
	}
	defer unlock()
	if err := r.checkSwappable(ctx); err != nil {
		return s, err
	}
	cursor, resumed, err := r.setup(ctx)
	if err != nil {
		return s, err
	}
	s.Resumed = resumed
	rb := qident(RebuildSchema)

	// Build, then catch up until the events that arrived meanwhile are few.
	r.phase = "building"
	for round := 0; ; round++ {
		to, err := r.bound(ctx)
		if err != nil {
			return r.summary(s), err
		}
		n, err := r.countBetween(ctx, cursor, to)
		if err != nil {
			return r.summary(s), fmt.Errorf("count events: %w", err)
		}
		r.total = r.done + n
		// Live traffic faster than the rebuild would never let the rounds
		// shrink: after maxCatchUpRounds the rest goes under the swap's lock.
		if round > 0 && (n < int64(r.opts.TailEvents) || round >= maxCatchUpRounds) {
			break
		}
		cursor, err = r.readEvents(ctx, cursor, to, func(ch *chunk) error {
			return r.commitChunk(ctx, ch)
		})
		if err != nil {
			return r.summary(s), err
		}
		r.phase = "catching up"
	}

	// Rooms whose seq the swap would lower, found before the locks.
	if err := r.checkSeqsAhead(ctx, cursor); err != nil {
		return r.summary(s), err
	}
	if r.opts.afterSeqCheck != nil {
		r.opts.afterSeqCheck()
	}
	// Swap: the tail under the live tables' locks, then the tables.
	r.phase = "swapping"
	for attempt := 1; ; attempt++ {
		held, tail, err := r.swap(ctx, cursor)
		if err == nil {
			s.Swapped, s.LockHeld, s.TailEvents, s.SeqsKept, s.Retired = true, held, tail, r.seqsKept, r.retired
			break
		}
		if !isLockTimeout(err) || attempt == swapAttempts || ctx.Err() != nil {
			return r.summary(s), err
		}
		r.log.Warn("swap: the live tables stayed locked by others; catching up and trying again",
			slog.Int("attempt", attempt), slog.Any("error", err))
		to, berr := r.bound(ctx)
		if berr != nil {
			return r.summary(s), berr
		}
		if cursor, err = r.readEvents(ctx, cursor, to, func(ch *chunk) error { return r.commitChunk(ctx, ch) }); err != nil {
			return r.summary(s), err
		}
	}
	// The rebuild's progress goes; the replaced tables stay until
	// `roomcast replay drop-retired`.
	if err := r.db.WithContext(ctx).Exec(`DROP SCHEMA IF EXISTS ` + rb + ` CASCADE`).Error; err != nil {
		r.log.Warn("rebuild swapped, but dropping its progress failed (the next rebuild drops it)", slog.Any("error", err))
	}
	r.log.Info("the replaced read models are kept until `roomcast replay drop-retired`", slog.String("schema", r.retired))
	r.report()
	return r.summary(s), nil
}

func (r *rebuilder) summary(s RebuildSummary) RebuildSummary {
	s.Counts = r.counts
	return s
}

// commitChunk applies ch to the rebuild schema and moves the cursor, in one transaction.
func (r *rebuilder) commitChunk(ctx context.Context, ch *chunk) error {
	next := r.counts.clone()
	err := r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		next = r.counts.clone()
		// The rebuild's own transactions: its cursor commits with its rows,
		// so losing the last ones in a crash only repeats them.
		if err := tx.Exec(`SET LOCAL synchronous_commit = off`).Error; err != nil {
			return err
		}
		if err := tx.Exec(`SET LOCAL search_path = ` + qident(RebuildSchema) + `, ` + qident(r.live)).Error; err != nil {
			return err
		}
		if err := applyChunk(tx, ch, &next); err != nil {
			return err
		}
		return r.saveProgress(tx, ch.last, "building", next)
	})
	if err != nil {
		return fmt.Errorf("rebuild events up to position %d: %w", ch.last, err)
	}
	r.logProblems(ch)
	r.counts = next
	r.done += ch.read
	r.report()
	return nil
}

func (r *rebuilder) saveProgress(tx *gorm.DB, cursor int64, phase string, c Counts) error {
	js, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return tx.Exec(`UPDATE `+qident(RebuildSchema)+`.rebuild_progress SET cursor = ?, phase = ?, counts = ?, updated_at = now()`,
		cursor, phase, string(js)).Error
}

func (c Counts) clone() Counts {
	out := Counts{SeqMismatches: c.SeqMismatches, Problems: append([]Problem(nil), c.Problems...), ByType: map[string]*TypeCounts{}}
	for k, v := range c.ByType {
		cp := *v
		out.ByType[k] = &cp
	}
	return out
}

// lockRebuild takes the database's rebuild lock on a connection of its own,
// held until unlock.
func (r *rebuilder) lockRebuild(ctx context.Context) (func(), error) {
	sqlDB, err := r.db.DB()
	if err != nil {
		return nil, err
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("rebuild lock: %w", err)
	}
	var ok bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, rebuildLockKey).Scan(&ok); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("rebuild lock: %w", err)
	}
	if !ok {
		_ = conn.Close()
		return nil, ErrRebuildRunning
	}
	return func() {
		// Unlocked explicitly: a closed session's locks go only when its
		// backend has noticed, and the next rebuild may already be asking.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = conn.ExecContext(uctx, `SELECT pg_advisory_unlock($1)`, rebuildLockKey)
		discardConn(conn)
	}, nil
}
