package projections

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/errgroup"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/roomcast/roomcast/domain"
)

// RebuildSchema is the schema a rebuild builds the read models in before it
// swaps them for the live ones. It also holds the rebuild's progress, so that
// an interrupted rebuild resumes where it stopped.
const RebuildSchema = "roomcast_rebuild"

// rebuildLockKey is the advisory lock held by the one rebuild that may run on
// a database at a time ("rcrebld" in ASCII).
const rebuildLockKey int64 = 0x72637265626c64

// readModel is a table rebuilt from the events table. A read model added
// later is added here (and to the projection rules in batch.go).
type readModel struct {
	table string
	key   []string // primary key columns
	// ignore are columns a rebuild cannot reproduce (when the row was written).
	ignore []string
}

// readModels are listed in the order live projection locks them (rooms, then
// messages, then room_members): the swap locks them in the same order, so it
// cannot deadlock with a projection.
var readModels = []readModel{
	{table: "rooms", key: []string{"room_id"}, ignore: []string{"updated_at"}},
	{table: "messages", key: []string{"id"}},
	{table: "room_members", key: []string{"room_id", "user_id"}},
}

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

func (r *rebuilder) qlive(table string) string { return qident(r.live) + "." + qident(table) }

func qident(s string) string { return pgx.Identifier{s}.Sanitize() }

// ---- the rebuild ----

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

// discardConn closes conn for good instead of handing it back to the pool
// (its session holds locks or temporary tables).
func discardConn(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close()
}

// checkSwappable refuses tables the swap cannot carry over: a view, a
// foreign key or a trigger on a live read model would stay with the old table.
func (r *rebuilder) checkSwappable(ctx context.Context) error {
	var found []string
	err := r.db.WithContext(ctx).Raw(`
		WITH t AS (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		           WHERE n.nspname = ? AND c.relname = ANY(?::text[]))
		SELECT DISTINCT 'view ' || v.oid::regclass::text FROM pg_depend d JOIN pg_rewrite w ON w.oid = d.objid
		  JOIN pg_class v ON v.oid = w.ev_class WHERE d.refobjid IN (SELECT oid FROM t) AND v.oid NOT IN (SELECT oid FROM t)
		UNION ALL
		SELECT 'foreign key ' || conname || ' on ' || conrelid::regclass::text FROM pg_constraint
		  WHERE contype = 'f' AND (confrelid IN (SELECT oid FROM t) OR conrelid IN (SELECT oid FROM t))
		UNION ALL
		SELECT 'trigger ' || tgname || ' on ' || tgrelid::regclass::text FROM pg_trigger
		  WHERE tgrelid IN (SELECT oid FROM t) AND NOT tgisinternal`, r.live, arr(readModelNames())).Scan(&found).Error
	if err != nil {
		return fmt.Errorf("inspect the read models: %w", err)
	}
	if len(found) > 0 {
		return fmt.Errorf("rebuild cannot swap read models that other objects depend on (%s): drop them, rebuild, and create them again",
			strings.Join(found, ", "))
	}
	return nil
}

func readModelNames() []string {
	out := make([]string, len(readModels))
	for i, m := range readModels {
		out[i] = m.table
	}
	return out
}

// setup creates the rebuild schema, or finds the interrupted rebuild in it,
// and returns the cursor to continue from.
// migrationVersion is the database's newest applied migration (goose's table).
func migrationVersion(db *gorm.DB) (int64, error) {
	var version int64
	if err := db.Raw(`SELECT COALESCE((SELECT max(version_id) FROM goose_db_version WHERE is_applied), 0)`).Scan(&version).Error; err != nil {
		return 0, fmt.Errorf("read the migration version: %w", err)
	}
	return version, nil
}

func (r *rebuilder) setup(ctx context.Context) (cursor int64, resumed bool, err error) {
	version, err := migrationVersion(r.db.WithContext(ctx))
	if err != nil {
		return 0, false, err
	}
	r.version = version
	rb := qident(RebuildSchema)
	var exists bool
	if err := r.db.WithContext(ctx).Raw(`SELECT to_regclass(?) IS NOT NULL`, RebuildSchema+".rebuild_progress").Scan(&exists).Error; err != nil {
		return 0, false, fmt.Errorf("look for an interrupted rebuild: %w", err)
	}
	if exists {
		var p struct {
			LiveSchema string
			Migration  int64
			Cursor     int64
			Phase      string
			Counts     string
		}
		if err := r.db.WithContext(ctx).Raw(`SELECT live_schema, migration, cursor, phase, counts::text AS counts FROM ` + rb + `.rebuild_progress`).Scan(&p).Error; err != nil {
			return 0, false, fmt.Errorf("read the interrupted rebuild: %w", err)
		}
		switch {
		case r.opts.Restart:
			r.log.Info("discarding the interrupted rebuild (restart)", slog.Int64("cursor", p.Cursor))
		case p.Phase != "building":
			r.log.Info("the previous rebuild finished; starting a new one")
		case p.Migration != version || p.LiveSchema != r.live:
			r.log.Warn("the interrupted rebuild was made for another schema version: starting over",
				slog.Int64("its_version", p.Migration), slog.Int64("version", version))
		default:
			if err := json.Unmarshal([]byte(p.Counts), &r.counts); err != nil {
				return 0, false, fmt.Errorf("read the interrupted rebuild's counts: %w", err)
			}
			r.log.Info("resuming the interrupted rebuild", slog.Int64("cursor", p.Cursor))
			return p.Cursor, true, nil
		}
	}
	err = r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		stmts := []string{
			`DROP SCHEMA IF EXISTS ` + rb + ` CASCADE`,
			`CREATE SCHEMA ` + rb,
			`CREATE TABLE ` + rb + `.rebuild_progress (
				id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
				live_schema text NOT NULL,
				migration bigint NOT NULL,
				cursor bigint NOT NULL DEFAULT 0,
				phase text NOT NULL DEFAULT 'building',
				counts jsonb NOT NULL DEFAULT '{}',
				started_at timestamptz NOT NULL DEFAULT now(),
				updated_at timestamptz NOT NULL DEFAULT now())`,
		}
		for _, q := range stmts {
			if err := tx.Exec(q).Error; err != nil {
				return err
			}
		}
		if err := tx.Exec(`INSERT INTO `+rb+`.rebuild_progress (live_schema, migration) VALUES (?, ?)`, r.live, version).Error; err != nil {
			return err
		}
		for _, m := range readModels {
			if err := copyTable(tx, r.live, m.table, rb, false); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("create the rebuild schema %s: %w", RebuildSchema, err)
	}
	r.counts = Counts{}
	return 0, false, nil
}

// copyTable creates an empty table like schema.table in the schema target
// (already quoted; "" for a temporary table): same columns, defaults,
// constraints, storage options and indexes, the indexes under the same names.
func copyTable(tx *gorm.DB, schema, table, target string, temp bool) error {
	src := qident(schema) + "." + qident(table)
	dst := target + "." + qident(table)
	create := `CREATE TABLE ` + dst
	if temp {
		dst = qident(table)
		create = `CREATE TEMPORARY TABLE ` + dst
	}
	if err := tx.Exec(create + ` (LIKE ` + src + ` INCLUDING ALL EXCLUDING INDEXES)`).Error; err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	var opts []string
	if err := tx.Raw(`SELECT unnest(reloptions) FROM pg_class WHERE oid = ?::regclass`, src).Scan(&opts).Error; err != nil {
		return fmt.Errorf("read storage options of %s: %w", src, err)
	}
	if len(opts) > 0 && !temp {
		if err := tx.Exec(`ALTER TABLE ` + dst + ` SET (` + strings.Join(opts, ", ") + `)`).Error; err != nil {
			return fmt.Errorf("set storage options of %s: %w", dst, err)
		}
	}
	var idx []struct {
		Name, Def, On string
		Constr        *string
	}
	// pg_get_indexdef names the table as quote_ident does (quoted only when needed).
	if err := tx.Raw(`SELECT ic.relname AS name, pg_get_indexdef(i.indexrelid) AS def, pg_get_constraintdef(c.oid) AS constr,
			quote_ident(tn.nspname) || '.' || quote_ident(tc.relname) AS on
		FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
		JOIN pg_class tc ON tc.oid = i.indrelid JOIN pg_namespace tn ON tn.oid = tc.relnamespace
		LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
		WHERE i.indrelid = ?::regclass ORDER BY ic.relname`, src).Scan(&idx).Error; err != nil {
		return fmt.Errorf("read indexes of %s: %w", src, err)
	}
	for _, ix := range idx {
		var q string
		if ix.Constr != nil {
			q = `ALTER TABLE ` + dst + ` ADD CONSTRAINT ` + qident(ix.Name) + ` ` + *ix.Constr
		} else {
			on := " ON " + ix.On + " "
			if !strings.Contains(ix.Def, on) {
				return fmt.Errorf("copy index %s: unexpected definition %q", ix.Name, ix.Def)
			}
			q = strings.Replace(ix.Def, on, " ON "+dst+" ", 1)
		}
		if err := tx.Exec(q).Error; err != nil {
			return fmt.Errorf("create index %s on %s: %w", ix.Name, dst, err)
		}
	}
	return nil
}

// swap applies the events after cursor and swaps the rebuilt tables in, in
// one transaction under EXCLUSIVE locks on the live read models and events.
func (r *rebuilder) swap(ctx context.Context, cursor int64) (held time.Duration, tail int64, err error) {
	var locked time.Time
	next := r.counts.clone()
	var (
		applied []*chunk
		kept    int64
		retired string
	)
	err = r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var err error
		next, applied = r.counts.clone(), nil
		if err := tx.Exec(fmt.Sprintf(`SET LOCAL lock_timeout = %d`, r.opts.LockTimeout.Milliseconds())).Error; err != nil {
			return err
		}
		tables := make([]string, 0, len(readModels)+1)
		for _, m := range readModels {
			tables = append(tables, r.qlive(m.table))
		}
		tables = append(tables, r.qlive("events"))
		if err := tx.Exec(`LOCK TABLE ` + strings.Join(tables, ", ") + ` IN EXCLUSIVE MODE`).Error; err != nil {
			return fmt.Errorf("lock the live read models: %w", err)
		}
		locked = time.Now()
		// A migration that ran meanwhile may have changed the live tables
		// the rebuild copied: swapping would undo it.
		if v, err := migrationVersion(tx); err != nil {
			return err
		} else if v != r.version {
			return fmt.Errorf("%w: the database went from migration %d to %d during the rebuild; run it again", ErrSchemaChanged, r.version, v)
		}
		// Every event is committed now, and none can be added.
		if err := tx.Exec(`SET LOCAL search_path = ` + qident(RebuildSchema) + `, ` + qident(r.live)).Error; err != nil {
			return err
		}
		last := cursor
		for {
			ch, err := r.readChunk(tx, last, 1<<62)
			if err != nil {
				return err
			}
			if ch.read == 0 {
				break
			}
			if err := applyChunk(tx, ch, &next); err != nil {
				return fmt.Errorf("rebuild events up to position %d: %w", ch.last, err)
			}
			applied = append(applied, ch)
			last = ch.last
		}
		if err := tx.Exec(`SET LOCAL search_path = ` + qident(r.live)).Error; err != nil {
			return err
		}
		// No room's last seq may go down (see ErrSeqWouldRegress).
		if kept, err = r.guardSeqs(tx); err != nil {
			return err
		}
		if retired, err = retiredName(tx, time.Now()); err != nil {
			return err
		}
		if err := tx.Exec(`CREATE SCHEMA ` + qident(retired)).Error; err != nil {
			return err
		}
		for _, m := range readModels {
			if err := tx.Exec(`ALTER TABLE ` + r.qlive(m.table) + ` SET SCHEMA ` + qident(retired)).Error; err != nil {
				return fmt.Errorf("retire %s: %w", m.table, err)
			}
			if err := tx.Exec(`ALTER TABLE ` + qident(RebuildSchema) + `.` + qident(m.table) + ` SET SCHEMA ` + qident(r.live)).Error; err != nil {
				return fmt.Errorf("swap in %s: %w", m.table, err)
			}
			if err := copyGrants(tx, qident(retired)+"."+qident(m.table), r.qlive(m.table)); err != nil {
				return err
			}
		}
		return r.saveProgress(tx, last, "swapped", next)
	})
	if err != nil {
		return 0, 0, fmt.Errorf("swap the rebuilt read models in: %w", err)
	}
	held = time.Since(locked)
	for _, ch := range applied {
		r.logProblems(ch)
		tail += ch.read
	}
	r.counts = next
	r.done += tail
	r.seqsKept, r.retired = kept, retired
	return held, tail, nil
}

// copyGrants gives the new table the privileges granted on the old one.
func copyGrants(tx *gorm.DB, from, to string) error {
	var grants []struct {
		Privilege, Grantee string
		Grantable          bool
	}
	if err := tx.Raw(`SELECT a.privilege_type AS privilege,
			CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END AS grantee,
			a.is_grantable AS grantable
		FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = ?::regclass AND a.grantee <> c.relowner`, from).Scan(&grants).Error; err != nil {
		return fmt.Errorf("read grants on %s: %w", from, err)
	}
	for _, g := range grants {
		q := `GRANT ` + g.Privilege + ` ON ` + to + ` TO ` + g.Grantee
		if g.Grantable {
			q += ` WITH GRANT OPTION`
		}
		if err := tx.Exec(q).Error; err != nil {
			return fmt.Errorf("grant on %s: %w", to, err)
		}
	}
	return nil
}

func isLockTimeout(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "55P03" || pe.Code == "40P01")
}

// compareReadModels counts how the read models in schema ("pg_temp" for
// temporary tables) differ from those in the schema live.
func compareReadModels(db *gorm.DB, live, schema string) ([]TableChange, error) {
	var out []TableChange
	for _, m := range readModels {
		var cols []string
		if err := db.Raw(`SELECT attname FROM pg_attribute WHERE attrelid = ?::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
			qident(live)+"."+qident(m.table)).Scan(&cols).Error; err != nil {
			return nil, fmt.Errorf("read columns of %s: %w", m.table, err)
		}
		var on, newCols, oldCols []string
		for _, k := range m.key {
			on = append(on, "n."+qident(k)+" = o."+qident(k))
		}
		for _, c := range cols {
			if !contains(m.ignore, c) {
				newCols, oldCols = append(newCols, "n."+qident(c)), append(oldCols, "o."+qident(c))
			}
		}
		nt, ot := qident(schema)+"."+qident(m.table), qident(live)+"."+qident(m.table)
		if schema == "pg_temp" {
			nt = "pg_temp." + qident(m.table)
		}
		join := strings.Join(on, " AND ")
		tc := TableChange{Table: m.table}
		err := db.Raw(`SELECT
			(SELECT count(*) FROM `+nt+` n WHERE NOT EXISTS (SELECT 1 FROM `+ot+` o WHERE `+join+`)) AS added,
			(SELECT count(*) FROM `+nt+` n JOIN `+ot+` o ON `+join+` WHERE (`+strings.Join(newCols, ", ")+`) IS DISTINCT FROM (`+strings.Join(oldCols, ", ")+`)) AS changed,
			(SELECT count(*) FROM `+ot+` o WHERE NOT EXISTS (SELECT 1 FROM `+nt+` n WHERE `+join+`)) AS removed`).
			Row().Scan(&tc.Added, &tc.Changed, &tc.Removed)
		if err != nil {
			return nil, fmt.Errorf("compare %s: %w", m.table, err)
		}
		out = append(out, tc)
	}
	return out, nil
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// ---- the dry run ----

// dryRun rebuilds into temporary tables on one connection of its own and
// compares them with the live read models; nothing outlives the connection.
func (r *rebuilder) dryRun(ctx context.Context) (RebuildSummary, error) {
	s := RebuildSummary{DryRun: true}
	tdb, done, err := sessionDB(ctx, r.db)
	if err != nil {
		return s, err
	}
	defer done()
	for _, m := range readModels {
		if err := copyTable(tdb.WithContext(ctx), r.live, m.table, "", true); err != nil {
			return s, fmt.Errorf("dry run: %w", err)
		}
	}
	r.phase = "building"
	to, err := r.bound(ctx)
	if err != nil {
		return s, err
	}
	if r.total, err = r.countBetween(ctx, 0, to); err != nil {
		return s, fmt.Errorf("count events: %w", err)
	}
	// Temporary tables come first in the search path: the projection rules
	// write to them.
	_, err = r.readEvents(ctx, 0, to, func(ch *chunk) error {
		if err := tdb.WithContext(ctx).Transaction(func(tx *gorm.DB) error { return applyChunk(tx, ch, &r.counts) }); err != nil {
			return fmt.Errorf("dry run up to position %d: %w", ch.last, err)
		}
		r.logProblems(ch)
		r.done += ch.read
		r.report()
		return nil
	})
	if err != nil {
		return r.summary(s), err
	}
	r.phase = "comparing"
	r.report()
	if s.Tables, err = compareReadModels(tdb.WithContext(ctx), r.live, "pg_temp"); err != nil {
		return r.summary(s), err
	}
	s.SeqsWouldLower, err = countRoomsBelowLive(tdb.WithContext(ctx), r.live, "pg_temp")
	return r.summary(s), err
}

// sessionDB returns a GORM handle bound to one connection of db's pool, for
// work that needs one session (temporary tables). done discards the
// connection.
func sessionDB(ctx context.Context, db *gorm.DB) (*gorm.DB, func(), error) {
	sqlDB, err := db.DB()
	if err != nil {
		return nil, nil, err
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("connect: %w", err)
	}
	gdb, err := gorm.Open(postgres.New(postgres.Config{Conn: conn}), &gorm.Config{
		SkipDefaultTransaction: true,
		Logger:                 logger.Discard,
		NowFunc:                func() time.Time { return time.Now().UTC() },
	})
	if err != nil {
		discardConn(conn)
		return nil, nil, err
	}
	return gdb, func() { discardConn(conn) }, nil
}
