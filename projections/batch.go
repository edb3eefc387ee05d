package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"gorm.io/gorm"

	"github.com/roomcast/roomcast/domain"
)

// Item is one event of a batch and where it was read from.
type Item struct {
	Env    domain.Envelope
	Origin Origin
}

// Result is what projecting one item of a batch did. Err is set for an item
// that was rejected on its own (domain.ErrUnknownMessage, a contract
// violation, domain.ErrUnstorable when Postgres refused it): the rest of the
// batch is committed, the item is not recorded. After a split batch failed
// part-way (see ProjectBatch), Err is a transient error (domain.IsPermanent
// is false) for the items that were not committed: they are to be retried.
type Result struct {
	Outcome Outcome
	Err     error
}

// ProjectBatch projects items in one transaction with a fixed number of
// statements, whatever their number. The result is the same as projecting
// them one by one, in order: the same rows, seqs and deliveries (tests hold
// it to a one-by-one reference, ProjectOneByOne). An item rejected on its
// own gets an Err in its Result and the others commit. A returned error is
// transient: nothing was committed.
//
// When Postgres refuses the transaction for what an event may cause (see
// classify), the batch is split until the events it refuses are found
// (projectSplitting): they get domain.ErrUnstorable, the others commit in
// several transactions, in order. Should a part then fail transiently, the
// parts before it stay committed and the items not committed get that
// error in their Result instead of a returned error: always a suffix of
// items, so a room's later event is never committed while an earlier one
// is not done.
func (p *Projector) ProjectBatch(ctx context.Context, items []Item) ([]Result, error) {
	start := time.Now()
	results := make([]Result, len(items))
	b := &batch{items: items, results: results}
	if err := b.prepare(); err != nil {
		return nil, err
	}
	attempt := func(part *batch) error {
		run := func() error {
			return transaction(ctx, p.db, func(tx *gorm.DB, cp copyFunc) error {
				part.reset()
				part.copy = cp
				return part.run(tx)
			})
		}
		part.optimistic = time.Now().UnixNano() >= p.lookUpUntil.Load()
		part.terminateOnLeave = p.terminateOnLeave
		err := run()
		if part.optimistic && (errors.Is(err, errClaimedMeanwhile) || errors.Is(err, errMessageExists)) {
			// An id of the batch is stored, or a message it created exists:
			// redeliveries (a restart, a rebalance) and repeated creates come
			// in runs, so look them up for a while.
			p.lookUpUntil.Store(time.Now().Add(p.lookUpFor).UnixNano())
			part.optimistic = false
			err = run()
		}
		return err
	}
	commits := 0
	err := projectSplitting(b, attempt, func(part *batch) { commits++; p.committed(part) })
	refusedN := 0
	for i, r := range results {
		if errors.Is(r.Err, domain.ErrUnstorable) {
			refusedN++
			env := items[i].Env
			p.metrics.projected.WithLabelValues(string(env.Type), "unstorable").Inc()
			p.log.Warn("event refused by Postgres: not stored", append(logAttrs(env.ID, string(env.Type), eventRoom(env.Event)),
				slog.String("reason", r.Err.Error()))...)
		}
	}
	if err != nil {
		if commits == 0 && refusedN == 0 {
			for _, it := range items {
				p.metrics.failures.WithLabelValues(string(it.Env.Type)).Inc()
			}
			return nil, fmt.Errorf("project a batch of %d events: %w", len(items), err)
		}
		b.unfinished(fmt.Errorf("project a part of a batch of %d events split around what Postgres refused: %w", len(items), err))
		for i, r := range results {
			if r.Err != nil && !domain.IsPermanent(r.Err) {
				p.metrics.failures.WithLabelValues(string(items[i].Env.Type)).Inc()
			}
		}
	}
	p.metrics.seconds.Observe(time.Since(start).Seconds())
	return results, nil
}

// committed counts what a committed batch (or part of one) did and hands
// its deliveries on.
func (p *Projector) committed(b *batch) {
	for i, r := range b.results {
		env := b.items[i].Env
		switch {
		case errors.Is(r.Err, domain.ErrUnknownMessage):
			p.metrics.projected.WithLabelValues(string(env.Type), "unknown_message").Inc()
		case r.Err != nil:
		case r.Outcome == Conflict:
			p.metrics.projected.WithLabelValues(string(env.Type), r.Outcome.String()).Inc()
			p.metrics.conflicts.WithLabelValues(string(env.Type)).Inc()
			p.log.Warn("event id reused with a different payload: the first one stands", logAttrs(env.ID, string(env.Type), eventRoom(env.Event))...)
		default:
			p.metrics.projected.WithLabelValues(string(env.Type), r.Outcome.String()).Inc()
		}
	}
	for _, d := range b.owed {
		if d.Truncated {
			p.metrics.truncated.WithLabelValues(d.Name).Inc()
		}
		if d.TooLarge {
			p.metrics.tooLarge.WithLabelValues(d.Name).Inc()
			p.log.Error("delivery exceeds Pusher's 10 KB even with its text emptied: parked, not sent",
				slog.String("event_id", d.EventID), slog.String("event", d.Name))
		}
	}
	if len(b.owed) > 0 {
		p.deliveriesOwed(b)
	}
}

// lookUpAfterStored is how long batches look their ids up in events before
// they are written, once a batch met a stored one. In between, a batch's ids
// are taken to be new, and the primary key of events catches one that is
// not: the lookup costs an index probe per event, a share of Postgres's
// statement time under a backlog, and ids are seldom stored already but in
// runs (the redeliveries after a restart or a rebalance, a replay).
const lookUpAfterStored = time.Minute

// deliveriesOwed hands a committed batch's deliveries to the dispatcher, or
// tells it to read the outbox.
func (p *Projector) deliveriesOwed(b *batch) {
	// A delete in the batch redacted, in Postgres, pending deliveries of
	// earlier batches that the dispatcher may hold as handed over: it reads
	// the outbox again.
	if p.handoff != nil && len(b.deletedM) == 0 {
		now := time.Now()
		for i := range b.owed {
			b.owed[i].CreatedAt = now
		}
		if p.handoff(b.owed) {
			return
		}
	}
	if p.owed != nil {
		p.owed()
	}
}

// batch is the state of one ProjectBatch transaction.
type batch struct {
	items   []Item
	results []Result
	data    []string // canonical data per item
	prints  []string // fingerprint per item
	valid   []bool

	// Set by replays (applyChunk, Replayer.Project), never by live projection:
	// readModelsOnly applies the events to the read models alone (messages,
	// room_members, rooms): nothing is looked up in or written to events or
	// deliveries. silent owes no deliveries (a replay without --notify).
	readModelsOnly, silent bool

	// terminateOnLeave: an applied member.left owes a terminate delivery
	// too (see terminate.go). Set by ProjectBatch, never by replays.
	terminateOnLeave bool

	// copy writes rows with COPY on the transaction's connection; nil for
	// read-model rebuilds, which write neither events nor deliveries.
	copy copyFunc

	// optimistic skips looking the batch's ids up in events, and the
	// messages it creates up in messages: they are taken to be new, and one
	// that is not fails the copy on its primary key (errClaimedMeanwhile,
	// errMessageExists), after which the batch runs again with the lookups.
	// Set by ProjectBatch (see lookUpAfterStored).
	optimistic bool

	// Of a batch split around what Postgres refused (projectSplitting):
	// parts are the batches it was split into, finished that it is done
	// (committed, or its items refused or rejected before).
	parts    []*batch
	finished bool

	// Reset at every attempt of the transaction:
	owed      []domain.Delivery
	rooms     map[string]int64 // last seq per locked room
	msgs      map[string]*msgState
	members   map[[2]string]*memberState
	seqOf     map[string]int64  // event id -> seq
	redactOwn []string          // event ids whose own text is redacted (no-op on a deleted message)
	stored    map[string]string // fingerprints of ids stored before this batch
	standing  map[string]int    // event id -> index of the item recorded for it
	deletedM  []string          // ids of the messages deleted by this batch (their events and deliveries are redacted)
}

type msgState struct {
	room                  string
	existed, exists       bool
	changed               bool
	seq                   int64
	authorID, authorName  string
	authorAvatar, editBy  *string
	content               string
	createdAt             time.Time
	editedAt, deletedAt   *time.Time
	deletedBy             *string
	deleted, wasDeletedDB bool
	// eventIDs are the events of this batch that carry the message's text
	// (its create, edits, repeated creates in its room): appended to
	// messages.event_ids, which a delete redacts.
	eventIDs []string
}

type memberState struct {
	existed, present, changed bool
	name                      string
	avatar                    *string
	joinedAt                  time.Time
}

func (b *batch) prepare() error {
	b.data = make([]string, len(b.items))
	b.prints = make([]string, len(b.items))
	b.valid = make([]bool, len(b.items))
	for i, it := range b.items {
		if b.readModelsOnly {
			b.valid[i] = true
			continue
		}
		data, fp, err := canonicalData(it.Env)
		if err != nil {
			b.results[i] = Result{Err: err}
			continue
		}
		b.data[i], b.prints[i], b.valid[i] = data, fp, true
	}
	return nil
}

func (b *batch) reset() {
	b.owed = nil
	if !b.silent && !b.readModelsOnly {
		// About one delivery per event: sized once rather than grown by
		// appends, which reallocate it as the batch goes.
		b.owed = make([]domain.Delivery, 0, len(b.items))
	}
	b.rooms = map[string]int64{}
	b.msgs = map[string]*msgState{}
	b.members = map[[2]string]*memberState{}
	b.seqOf = make(map[string]int64, len(b.items))
	b.stored, b.standing = map[string]string{}, map[string]int{}
	b.redactOwn, b.deletedM = nil, nil
	for i := range b.results {
		if b.valid[i] {
			b.results[i] = Result{}
		}
	}
}

func (b *batch) run(tx *gorm.DB) error {
	if b.readModelsOnly || b.optimistic {
		// Nothing is stored for the read models being built: every item is
		// new. Optimistic: every item is taken to be new (see batch.optimistic).
	} else if err := b.lookupStored(tx); err != nil {
		return err
	}
	if err := b.load(tx); err != nil {
		return err
	}
	if err := b.loadRedriven(tx); err != nil {
		return err
	}
	for i, it := range b.items {
		if !b.valid[i] {
			continue
		}
		id := it.Env.ID
		if fp, ok := b.stored[id]; ok {
			b.results[i].Outcome = sameOrConflict(fp, b.prints[i])
			continue
		}
		if j, ok := b.standing[id]; ok {
			b.results[i].Outcome = sameOrConflict(b.prints[j], b.prints[i])
			continue
		}
		// A first occurrence, or a repeat of one that was rejected (and so
		// is not recorded): it is new.
		if err := b.apply(i, it.Env); err != nil {
			return err
		}
		if b.results[i].Err == nil {
			b.standing[id] = i
		}
	}
	return b.write(tx)
}

// errClaimedMeanwhile reports that one of the batch's event ids is stored:
// another transaction recorded it after it was looked up (two consumers
// during a rebalance), or the batch did not look it up (optimistic). The
// batch is rolled back and retried; the retry sees the id as stored.
var errClaimedMeanwhile = errors.New("an event of the batch was recorded concurrently; retrying")

// errMessageExists reports that a message an optimistic batch created
// exists already (a second create of its id). The batch is rolled back and
// run again with the lookups, which see it.
var errMessageExists = errors.New("a message the batch created exists already; retrying")

func sameOrConflict(stored, got string) Outcome {
	if stored == got {
		return Duplicate
	}
	return Conflict
}
