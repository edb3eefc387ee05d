package projections

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/roomcast/roomcast/domain"
)

// What a failed projection transaction says about its events.
type verdict int

const (
	// transient: not an event's doing (the connection, a timeout, a
	// restart, a lock, the schema or the roles): retried as a whole, never
	// dead-lettered.
	transient verdict = iota
	// refused: a data exception or program limit (SQLSTATE class 22, 54):
	// the event that caused it can never be stored as it is.
	refused
	// suspect: another server error, which an event may cause (a
	// constraint, a trigger): the event's if projecting it alone keeps
	// returning it (attemptsAlone times).
	suspect
)

// attemptsAlone is how often a batch of one is tried before a suspect error
// refuses its event.
const attemptsAlone = 3

// transientClasses are the SQLSTATE classes no event can cause: roomcast's
// statements are fixed and an event's values reach them only as parameters
// and COPY data, so a syntax error, an undefined table or column, a missing
// privilege (42), a feature or plan change (0A), an invalid transaction or
// authorization state (25, 28, 2D...), a missing database or schema (3D,
// 3F) are the deployment's, and resources (53), locks and object state
// (55), an administrator or a restart (57), the connection (08),
// serialization and deadlocks (40), system or internal errors (58, XX, F0,
// 72) the server's. Dead-lettering on them would drop every event while a
// grant or a migration is missing; they are retried until fixed.
var transientClasses = map[string]bool{
	"08": true, "0A": true, "0B": true, "0L": true, "0P": true, "24": true, "25": true, "26": true,
	"28": true, "2B": true, "2D": true, "34": true, "3B": true, "3D": true, "3F": true, "40": true,
	"42": true, "53": true, "55": true, "57": true, "58": true, "72": true, "F0": true, "HV": true,
	"XX": true,
}

// classify says what err, a failed projection transaction's error, says
// about its events; pgErr is the server's error behind it, if any.
func classify(err error) (v verdict, pgErr *pgconn.PgError) {
	if !errors.As(err, &pgErr) {
		return transient, nil // connection, timeout, cancellation, a race retried (errClaimedMeanwhile)
	}
	class := pgErr.Code
	if len(class) >= 2 {
		class = class[:2]
	}
	switch {
	case class == "22" || class == "54":
		return refused, pgErr
	case transientClasses[class]:
		return transient, pgErr
	}
	return suspect, pgErr
}

// unstorable is the error of an event Postgres refused: ErrUnstorable with
// the server's message (one line, cut; never its detail or context, which
// may quote the payload) and SQLSTATE.
func unstorable(pgErr *pgconn.PgError) error {
	msg := strings.Join(strings.Fields(pgErr.Message), " ")
	if len(msg) > 160 {
		msg = strings.ToValidUTF8(msg[:160], "") + "..."
	}
	return fmt.Errorf("%w: %s (SQLSTATE %s)", domain.ErrUnstorable, msg, pgErr.Code)
}

// projectSplitting runs b with attempt, one transaction that commits or
// fails whole. When Postgres refuses it in a way one of its events may
// cause, b is split in halves, in order, each run the same way, the first
// finished (committed, or down to the events refused) before the second
// starts, down to single events: those Postgres refuses get
// domain.ErrUnstorable in their Result and the others commit. An event
// thus never overtakes an earlier one of its room that is not done; the
// successors of a refused event go on, as after an unknown message.
// committed is called after each part that committed, in order.
//
// It stops at the first transient failure and returns it: the parts run
// before stand, and the events not yet done are those from the failed part
// to the end of b (see unfinished).
//
// The split lives here, in projections, rather than in the batcher: this
// package knows which server errors an event can cause, and every caller of
// a batch (the worker's batcher, a replay) gets the same answer; the cost,
// about 2*log2(n) transactions for one refused event among n, is paid only
// when Postgres refuses one.
func projectSplitting(b *batch, attempt func(*batch) error, committed func(*batch)) error {
	live := b.live()
	if live == 0 {
		b.finished = true // nothing left to store: rejected before (invalid) or refused
		return nil
	}
	err := attempt(b)
	if err == nil {
		b.finished = true
		committed(b)
		return nil
	}
	v, pgErr := classify(err)
	if v == transient {
		return err
	}
	if live > 1 {
		first, second := b.halves()
		if err := projectSplitting(first, attempt, committed); err != nil {
			return err
		}
		return projectSplitting(second, attempt, committed)
	}
	for n := 1; v == suspect && n < attemptsAlone; n++ {
		if err = attempt(b); err == nil {
			b.finished = true
			committed(b)
			return nil
		}
		if v, pgErr = classify(err); v == transient {
			return err
		}
	}
	for i := range b.items {
		if b.valid[i] {
			b.valid[i] = false
			b.results[i] = Result{Err: unstorable(pgErr)}
		}
	}
	b.finished = true
	return nil
}

// live counts the items that are still to be stored.
func (b *batch) live() int {
	n := 0
	for _, v := range b.valid {
		if v {
			n++
		}
	}
	return n
}

// halves splits b into its first and second half by live items; each is a
// batch over the same items, results and canonical data (slices of b's).
func (b *batch) halves() (*batch, *batch) {
	half, mid := b.live()/2, 0
	for seen := 0; seen < half; mid++ {
		if b.valid[mid] {
			seen++
		}
	}
	return b.part(0, mid), b.part(mid, len(b.items))
}

func (b *batch) part(from, to int) *batch {
	p := &batch{items: b.items[from:to], results: b.results[from:to], data: b.data[from:to], prints: b.prints[from:to],
		valid: b.valid[from:to], readModelsOnly: b.readModelsOnly, silent: b.silent, optimistic: b.optimistic}
	b.parts = append(b.parts, p)
	return p
}

// unfinished marks the items of b that no committed part holds and that
// were not refused: after a transient failure of a split batch they are
// not stored, and their Result says so with err.
func (b *batch) unfinished(err error) (n int) {
	if b.finished {
		return 0
	}
	if len(b.parts) == 0 {
		for i := range b.items {
			if b.valid[i] {
				b.results[i] = Result{Err: err}
				n++
			}
		}
		return n
	}
	for _, p := range b.parts {
		n += p.unfinished(err)
	}
	return n
}
