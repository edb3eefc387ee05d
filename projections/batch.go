package projections

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
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
// not: the lookup (one index probe per event) was ~8% of Postgres's
// statement time under a backlog, and ids are seldom stored already but in
// runs (the redeliveries after a restart or a rebalance, a replay).
const lookUpAfterStored = time.Minute

// deliveriesOwed hands a committed batch's deliveries to the dispatcher, or
// tells it to read the outbox.
func (p *Projector) deliveriesOwed(b *batch) {
	// A delete in the batch redacted deliveries in Postgres (this batch's
	// among them) after they were copied: b.owed no longer says what is owed.
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

	// Set by replays (rebuild.go, replay.go), never by live projection:
	// readModelsOnly applies the events to the read models alone (messages,
	// room_members, rooms): nothing is looked up in or written to events or
	// deliveries. silent owes no deliveries (a replay without --notify).
	readModelsOnly, silent bool

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
		// About one delivery per event: grown by appends, the slice was
		// ~5% of `roomcast run`'s allocations.
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

// lookupStored reads the fingerprints of the batch's ids that are already stored.
func (b *batch) lookupStored(tx *gorm.DB) error {
	seen := map[string]bool{}
	var ids []string
	for i, it := range b.items {
		if b.valid[i] && !seen[it.Env.ID] {
			seen[it.Env.ID] = true
			ids = append(ids, it.Env.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	var stored []struct{ ID, Fingerprint string }
	// One primary-key probe per id, whatever the statistics say: a lateral
	// subquery with LIMIT is never flattened into a hash or merge join. On
	// tables growing faster than autovacuum analyzes them the planner chose
	// to read all of the table for a batch's ids (id = ANY: a sequential
	// scan; a plain join with unnest: a hash or merge join over the whole
	// primary key), 17 ms a batch on 170,000 rows against 2 ms by probes.
	if err := scanRaw(tx.Raw(`SELECT e.id, e.fingerprint FROM unnest(?::text[]) AS u(id)
		CROSS JOIN LATERAL (SELECT id, fingerprint FROM events WHERE id = u.id LIMIT 1) e`, arr(ids)), &stored); err != nil {
		return fmt.Errorf("read stored events: %w", err)
	}
	for _, st := range stored {
		b.stored[st.ID] = st.Fingerprint
	}
	return nil
}

// record inserts the events that stand, with their seq, in the order they
// applied: events.position is then each room's projection order, which a
// rebuild replays (several events of a room can share a batch). Concurrent
// batches with events of one room cannot overlap (the room's lock is taken
// first, in load); two that share notification ids (a rebalance) meet them
// in their partition's order.
func (b *batch) record(tx *gorm.DB) error {
	ids := slices.Sorted(maps.Keys(b.standing))
	slices.SortFunc(ids, func(x, y string) int { return cmp.Compare(b.standing[x], b.standing[y]) })
	if len(ids) == 0 {
		return nil
	}
	if b.copy == nil {
		return errors.New("record events: no COPY for this transaction")
	}
	// A plain insert (COPY): the ids were looked up in this transaction, so
	// one already stored can only be another transaction's that committed
	// since (two consumers during a rebalance), and then the copy fails on
	// the primary key (or waits for that transaction and then fails). ON
	// CONFLICT DO NOTHING would cost a speculative insertion for every row
	// to catch that rare case. Rows go in the order of ids (the batch's
	// order), and so get their positions in it.
	err := b.copy(tx.Statement.Context, "events",
		[]string{"id", "type", "source", "subject", "room_id", "seq", "data", "fingerprint", "occurred_at", "kafka_partition", "kafka_offset", "delivery_id"},
		func(w *copyWriter) {
			delivery := make(map[string]int64, len(b.owed))
			for _, d := range b.owed {
				if d.RoomID != "" && d.ID != 0 {
					delivery[d.EventID] = d.ID // a room event owes one delivery at most
				}
			}
			for _, id := range ids {
				i := b.standing[id]
				it := b.items[i]
				w.row()
				w.text(id)
				w.text(string(it.Env.Type))
				w.text(it.Env.Source)
				w.optText(it.Env.Subject)
				w.optText(eventRoom(it.Env.Event))
				if s, ok := b.seqOf[id]; ok {
					w.int8(s)
				} else {
					w.null()
				}
				w.jsonb(b.data[i])
				w.text(b.prints[i])
				w.timestamptz(occurredAt(it.Env, it.Origin))
				if it.Origin.Partition >= 0 {
					w.int4(it.Origin.Partition)
					w.int8(it.Origin.Offset)
				} else {
					w.null()
					w.null()
				}
				if d, ok := delivery[id]; ok {
					w.int8(d)
				} else {
					w.null()
				}
			}
		})
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "23505" /* unique_violation */ && pgErr.ConstraintName == "events_pkey" {
		return errClaimedMeanwhile
	}
	if err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	return nil
}

// load locks the batch's rooms (sorted) and reads the messages and
// memberships its events may touch: every item whose id is not stored yet.
func (b *batch) load(tx *gorm.DB) error {
	roomSet, msgSet := map[string]bool{}, map[string]bool{}
	var mRooms, mUsers []string
	for i, it := range b.items {
		if !b.valid[i] {
			continue
		}
		if _, stored := b.stored[it.Env.ID]; stored {
			continue
		}
		switch e := it.Env.Event.(type) {
		case domain.MessageCreated:
			// Optimistic: a created message is taken to be new (an edit
			// or delete of it in the batch still reads it), and one that
			// exists fails the copy into messages (errMessageExists).
			roomSet[e.RoomID], msgSet[e.MessageID] = true, msgSet[e.MessageID] || !b.optimistic
		case domain.MessageEdited:
			roomSet[e.RoomID], msgSet[e.MessageID] = true, true
		case domain.MessageDeleted:
			roomSet[e.RoomID], msgSet[e.MessageID] = true, true
		case domain.MemberJoined:
			roomSet[e.RoomID] = true
			mRooms, mUsers = append(mRooms, e.RoomID), append(mUsers, e.UserID)
		case domain.MemberLeft:
			roomSet[e.RoomID] = true
			mRooms, mUsers = append(mRooms, e.RoomID), append(mUsers, e.UserID)
		}
	}
	if len(roomSet) > 0 {
		rooms := slices.Sorted(maps.Keys(roomSet))
		var locked []struct {
			RoomID  string
			LastSeq int64
		}
		if err := scanRaw(tx.Raw(`INSERT INTO rooms (room_id) SELECT r FROM unnest(?::text[]) AS r ORDER BY r
			ON CONFLICT (room_id) DO UPDATE SET room_id = EXCLUDED.room_id RETURNING room_id, last_seq`, arr(rooms)), &locked); err != nil {
			return fmt.Errorf("lock rooms: %w", err)
		}
		for _, r := range locked {
			b.rooms[r.RoomID] = r.LastSeq
		}
	}
	for id, read := range msgSet {
		if !read {
			delete(msgSet, id)
		}
	}
	if len(msgSet) > 0 {
		var rows []struct {
			ID      string
			RoomID  string
			Deleted bool
		}
		// Probes by primary key (see lookupStored), locked in id order: the
		// ids are sorted and a subquery that locks is never flattened, so
		// the nested loop takes them in the array's order.
		if err := scanRaw(tx.Raw(`SELECT m.id, m.room_id, m.deleted FROM unnest(?::text[]) AS u(id)
			CROSS JOIN LATERAL (SELECT id, room_id, deleted_at IS NOT NULL AS deleted FROM messages WHERE id = u.id FOR UPDATE) m`,
			arr(slices.Sorted(maps.Keys(msgSet)))), &rows); err != nil {
			return fmt.Errorf("read messages: %w", err)
		}
		for _, r := range rows {
			b.msgs[r.ID] = &msgState{room: r.RoomID, existed: true, exists: true, deleted: r.Deleted, wasDeletedDB: r.Deleted}
		}
	}
	if len(mRooms) > 0 {
		var rows []struct{ RoomID, UserID string }
		if err := scanRaw(tx.Raw(`SELECT m.room_id, m.user_id FROM room_members m
			JOIN unnest(?::text[], ?::text[]) AS u(room_id, user_id) ON m.room_id = u.room_id AND m.user_id = u.user_id`,
			arr(mRooms), arr(mUsers)), &rows); err != nil {
			return fmt.Errorf("read members: %w", err)
		}
		for _, r := range rows {
			b.members[[2]string{r.RoomID, r.UserID}] = &memberState{existed: true, present: true}
		}
	}
	return nil
}

// apply applies one claimed item to the in-memory state, as projecting it
// alone would.
func (b *batch) apply(i int, env domain.Envelope) error {
	res := &b.results[i]
	switch e := env.Event.(type) {
	case domain.UserNotification, domain.RoomsNotification:
		if b.readModelsOnly {
			res.Outcome = Applied
			return nil
		}
		ds, err := domain.NotificationDeliveries(env)
		if err != nil {
			return err
		}
		b.owed = append(b.owed, ds...)
		res.Outcome = Applied
		return nil
	case domain.RoomEvent:
		if b.staleRedrive(i, e) { // see redrive.go
			res.Outcome = Unchanged
			return nil
		}
		changed, err := b.applyRoom(env, e)
		if err != nil {
			if errors.Is(err, domain.ErrUnknownMessage) {
				res.Err = err
				return nil
			}
			return err
		}
		if !changed {
			res.Outcome = Unchanged
			return nil
		}
		seq := b.rooms[e.Room()] + 1
		b.rooms[e.Room()] = seq
		b.seqOf[env.ID] = seq
		if m, ok := e.(domain.MessageCreated); ok {
			b.msgs[m.MessageID].seq = seq
		}
		if b.readModelsOnly {
			res.Outcome = Applied
			return nil
		}
		d, err := domain.RoomDelivery(env, seq)
		if err != nil {
			return err
		}
		b.owed = append(b.owed, d)
		res.Outcome = Applied
		return nil
	}
	return fmt.Errorf("project %s: unsupported event %T", env.Type, env.Event)
}

func (b *batch) applyRoom(env domain.Envelope, e domain.RoomEvent) (bool, error) {
	switch e := e.(type) {
	case domain.MessageCreated:
		if m := b.msgs[e.MessageID]; m != nil && m.exists {
			switch {
			case m.deleted:
				b.redactOwn = append(b.redactOwn, env.ID)
			case m.room == e.RoomID:
				m.eventIDs = append(m.eventIDs, env.ID) // its text goes when the message is deleted
			}
			return false, nil
		}
		b.msgs[e.MessageID] = &msgState{room: e.RoomID, exists: true, changed: true, authorID: e.AuthorID,
			authorName: e.AuthorName, authorAvatar: e.AuthorAvatar, content: e.Content, createdAt: e.CreatedAt.UTC(),
			eventIDs: []string{env.ID}}
		return true, nil
	case domain.MessageEdited:
		m := b.msgs[e.MessageID]
		if m == nil || !m.exists || m.room != e.RoomID {
			return false, fmt.Errorf("message %q in room %q: %w", e.MessageID, e.RoomID, domain.ErrUnknownMessage)
		}
		if m.deleted {
			b.redactOwn = append(b.redactOwn, env.ID)
			return false, nil
		}
		at, by := e.EditedAt.UTC(), e.EditorID
		m.content, m.editedAt, m.editBy, m.changed = e.Content, &at, &by, true
		m.eventIDs = append(m.eventIDs, env.ID)
		return true, nil
	case domain.MessageDeleted:
		m := b.msgs[e.MessageID]
		if m == nil || !m.exists || m.room != e.RoomID {
			return false, fmt.Errorf("message %q in room %q: %w", e.MessageID, e.RoomID, domain.ErrUnknownMessage)
		}
		if m.deleted {
			return false, nil
		}
		at, by := e.DeletedAt.UTC(), e.DeletedBy
		m.content, m.deletedAt, m.deletedBy, m.deleted, m.changed = "", &at, &by, true, true
		b.deletedM = append(b.deletedM, e.MessageID)
		return true, nil
	case domain.MemberJoined:
		k := [2]string{e.RoomID, e.UserID}
		m := b.members[k]
		if m == nil {
			m = &memberState{}
			b.members[k] = m
		}
		if m.present {
			return false, nil
		}
		m.present, m.changed, m.name, m.avatar, m.joinedAt = true, true, e.UserName, e.UserAvatar, e.JoinedAt.UTC()
		return true, nil
	case domain.MemberLeft:
		k := [2]string{e.RoomID, e.UserID}
		m := b.members[k]
		if m == nil || !m.present {
			return false, nil
		}
		m.present, m.changed = false, true
		return true, nil
	}
	return false, fmt.Errorf("unsupported room event %T", e)
}

// write applies the batch's net effect with one statement per kind of change.
func (b *batch) write(tx *gorm.DB) error {
	exec := func(what, q string, args ...any) error {
		if err := tx.Exec(q, args...).Error; err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	if !b.readModelsOnly && !b.silent && len(b.owed) > 0 {
		// Ids first: a room event's row names its delivery.
		if err := reserveDeliveryIDs(tx, b.owed); err != nil {
			return err
		}
	}
	if b.readModelsOnly {
		// The events are not recorded again.
	} else if err := b.record(tx); err != nil {
		return err
	}
	// Messages: new ones inserted with their final state, existing ones
	// updated, each with the ids of this batch's events that carry its text
	// added to event_ids (first its create's, passed with the row, then the
	// others as (message, event) pairs); an existing message this batch
	// leaves unchanged gets its ids (repeated creates) appended on their own.
	var nID, nRoom, nAuthor, nName, nContent, nEvent []string
	var naID, naEvent, uaID, uaEvent, aID, aEvent []string
	var nSeq []int64
	var nAvatar, nEditBy, nDelBy []*string
	var nCreated []time.Time
	var nEdited, nDeleted []*time.Time
	var uID, uContent []string
	var uEditBy, uDelBy []*string
	var uEdited, uDeleted []*time.Time
	for _, id := range slices.Sorted(maps.Keys(b.msgs)) {
		m := b.msgs[id]
		switch {
		case m.changed && m.existed:
			for _, e := range m.eventIDs {
				uaID, uaEvent = append(uaID, id), append(uaEvent, e)
			}
		case m.changed && b.copy == nil: // new, inserted: the first id, its create's, goes in with the row
			for _, e := range m.eventIDs[1:] {
				naID, naEvent = append(naID, id), append(naEvent, e)
			}
		case m.changed: // new, copied with its whole list
		default:
			for _, e := range m.eventIDs {
				aID, aEvent = append(aID, id), append(aEvent, e)
			}
			continue
		}
		if !m.existed {
			if nID = append(nID, id); b.copy != nil {
				continue // the COPY reads the rest from b.msgs
			}
			nRoom, nSeq, nAuthor, nName = append(nRoom, m.room), append(nSeq, m.seq), append(nAuthor, m.authorID), append(nName, m.authorName)
			nAvatar, nContent, nCreated = append(nAvatar, m.authorAvatar), append(nContent, m.content), append(nCreated, m.createdAt)
			nEdited, nEditBy, nDeleted, nDelBy = append(nEdited, m.editedAt), append(nEditBy, m.editBy), append(nDeleted, m.deletedAt), append(nDelBy, m.deletedBy)
			nEvent = append(nEvent, m.eventIDs[0])
			continue
		}
		uID, uContent, uEdited, uEditBy = append(uID, id), append(uContent, m.content), append(uEdited, m.editedAt), append(uEditBy, m.editBy)
		uDeleted, uDelBy = append(uDeleted, m.deletedAt), append(uDelBy, m.deletedBy)
	}
	switch {
	case len(nID) == 0:
	case b.copy != nil:
		err := b.copy(tx.Statement.Context, "messages",
			[]string{"id", "room_id", "seq", "author_id", "author_name", "author_avatar", "content", "created_at", "edited_at", "edited_by", "deleted_at", "deleted_by", "event_ids"},
			func(w *copyWriter) {
				for _, id := range nID {
					m := b.msgs[id]
					w.row()
					w.text(id)
					w.text(m.room)
					w.int8(m.seq)
					w.text(m.authorID)
					w.text(m.authorName)
					w.textPtr(m.authorAvatar)
					w.text(m.content)
					w.timestamptz(m.createdAt)
					w.timePtr(m.editedAt)
					w.textPtr(m.editBy)
					w.timePtr(m.deletedAt)
					w.textPtr(m.deletedBy)
					w.textArray(m.eventIDs)
				}
			})
		if pgErr := (*pgconn.PgError)(nil); b.optimistic && errors.As(err, &pgErr) && pgErr.Code == "23505" /* unique_violation */ && pgErr.ConstraintName == "messages_pkey" {
			return errMessageExists
		}
		if err != nil {
			return fmt.Errorf("insert messages: %w", err)
		}
	default: // rebuilds, which have no COPY: one multi-row insert
		if err := exec("insert messages", `INSERT INTO messages (id, room_id, seq, author_id, author_name, author_avatar, content, created_at, edited_at, edited_by, deleted_at, deleted_by, event_ids)
			SELECT u.id, u.room_id, u.seq, u.author_id, u.author_name, u.author_avatar, u.content, u.created_at, u.edited_at, u.edited_by, u.deleted_at, u.deleted_by,
				ARRAY[u.event_id] || COALESCE(a.ids, '{}')
			FROM unnest(?::text[], ?::text[], ?::bigint[], ?::text[], ?::text[], ?::text[], ?::text[], ?::timestamptz[], ?::timestamptz[], ?::text[], ?::timestamptz[], ?::text[], ?::text[])
				AS u(id, room_id, seq, author_id, author_name, author_avatar, content, created_at, edited_at, edited_by, deleted_at, deleted_by, event_id)
			LEFT JOIN (SELECT x.id, array_agg(x.event_id ORDER BY x.n) AS ids
				FROM unnest(?::text[], ?::text[]) WITH ORDINALITY AS x(id, event_id, n) GROUP BY x.id) AS a ON a.id = u.id`,
			arr(nID), arr(nRoom), arr(nSeq), arr(nAuthor), arr(nName), arr(nAvatar), arr(nContent),
			arr(nCreated), arr(nEdited), arr(nEditBy), arr(nDeleted), arr(nDelBy), arr(nEvent), arr(naID), arr(naEvent)); err != nil {
			return err
		}
	}
	if len(uID) > 0 {
		// COALESCE keeps what this batch did not change (an edit leaves deleted_at, a delete leaves edited_at).
		if err := exec("update messages", `UPDATE messages AS m SET content = u.content,
				edited_at = COALESCE(u.edited_at, m.edited_at), edited_by = COALESCE(u.edited_by, m.edited_by),
				deleted_at = COALESCE(u.deleted_at, m.deleted_at), deleted_by = COALESCE(u.deleted_by, m.deleted_by),
				event_ids = m.event_ids || COALESCE(a.ids, '{}')
			FROM unnest(?::text[], ?::text[], ?::timestamptz[], ?::text[], ?::timestamptz[], ?::text[]) AS u(id, content, edited_at, edited_by, deleted_at, deleted_by)
			LEFT JOIN (SELECT x.id, array_agg(x.event_id ORDER BY x.n) AS ids
				FROM unnest(?::text[], ?::text[]) WITH ORDINALITY AS x(id, event_id, n) GROUP BY x.id) AS a ON a.id = u.id
			WHERE m.id = u.id`,
			arr(uID), arr(uContent), arr(uEdited), arr(uEditBy), arr(uDeleted), arr(uDelBy), arr(uaID), arr(uaEvent)); err != nil {
			return err
		}
	}
	if len(aID) > 0 {
		if err := exec("list message events", `UPDATE messages AS m SET event_ids = m.event_ids || a.ids
			FROM (SELECT u.id, array_agg(u.event_id ORDER BY u.n) AS ids
				FROM unnest(?::text[], ?::text[]) WITH ORDINALITY AS u(id, event_id, n) GROUP BY u.id) AS a
			WHERE m.id = a.id`, arr(aID), arr(aEvent)); err != nil {
			return err
		}
	}
	// Members: rows that left (or were replaced) deleted, rows present at the end inserted.
	var dRoom, dUser, iRoom, iUser, iName []string
	var iAvatar []*string
	var iJoined []time.Time
	for _, k := range sortedMemberKeys(b.members) {
		m := b.members[k]
		if !m.changed {
			continue
		}
		if m.existed {
			dRoom, dUser = append(dRoom, k[0]), append(dUser, k[1])
		}
		if m.present {
			iRoom, iUser, iName, iAvatar, iJoined = append(iRoom, k[0]), append(iUser, k[1]), append(iName, m.name), append(iAvatar, m.avatar), append(iJoined, m.joinedAt)
		}
	}
	if len(dRoom) > 0 {
		if err := exec("delete members", `DELETE FROM room_members m USING unnest(?::text[], ?::text[]) AS u(room_id, user_id)
			WHERE m.room_id = u.room_id AND m.user_id = u.user_id`, arr(dRoom), arr(dUser)); err != nil {
			return err
		}
	}
	if len(iRoom) > 0 {
		if err := exec("insert members", `INSERT INTO room_members (room_id, user_id, user_name, user_avatar, joined_at)
			SELECT * FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::timestamptz[])`,
			arr(iRoom), arr(iUser), arr(iName), arr(iAvatar), arr(iJoined)); err != nil {
			return err
		}
	}
	// Seqs: the rooms' last seq and each applied event's seq.
	if len(b.seqOf) > 0 {
		var rooms []string
		var last []int64
		for _, r := range slices.Sorted(maps.Keys(b.rooms)) {
			rooms, last = append(rooms, r), append(last, b.rooms[r])
		}
		if err := exec("advance room seqs", `UPDATE rooms AS r SET last_seq = u.last_seq, updated_at = now()
			FROM unnest(?::text[], ?::bigint[]) AS u(room_id, last_seq) WHERE r.room_id = u.room_id AND r.last_seq <> u.last_seq`,
			arr(rooms), arr(last)); err != nil {
			return err
		}
	}
	if b.readModelsOnly {
		return nil
	}
	if len(b.redactOwn) > 0 {
		if err := exec("redact events", `UPDATE events SET data = jsonb_set(data, '{content}', '""') WHERE id = ANY(?::text[])`, arr(b.redactOwn)); err != nil {
			return err
		}
	}
	if !b.silent && len(b.owed) > 0 {
		if err := copyDeliveries(tx.Statement.Context, b.copy, b.owed); err != nil {
			return err
		}
	}
	if len(b.deletedM) > 0 {
		// The deleted messages' event_ids are complete by now: the events
		// before this batch, and this batch's (recorded and appended above).
		if err := exec("redact events", `UPDATE events AS e SET data = jsonb_set(e.data, '{content}', '""')
			FROM (SELECT unnest(m.event_ids) AS id FROM messages m WHERE m.id = ANY(?::text[])) AS x
			WHERE e.id = x.id`, arr(b.deletedM)); err != nil {
			return err
		}
		if err := redactPendingDeliveries(tx, b.deletedM); err != nil {
			return err
		}
	}
	return nil
}

func sortedMemberKeys(m map[[2]string]*memberState) [][2]string {
	keys := make([][2]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]string) int {
		if c := strings.Compare(a[0], b[0]); c != 0 {
			return c
		}
		return strings.Compare(a[1], b[1])
	})
	return keys
}

// arr passes xs as one Postgres array parameter, encoded by pgx itself
// (GORM would expand a plain slice into a list of placeholders).
func arr[T any](xs []T) pgtype.Array[T] {
	return pgtype.Array[T]{Elements: xs, Dims: []pgtype.ArrayDimension{{Length: int32(len(xs)), LowerBound: 1}}, Valid: true}
}

func sameOrConflict(stored, got string) Outcome {
	if stored == got {
		return Duplicate
	}
	return Conflict
}
