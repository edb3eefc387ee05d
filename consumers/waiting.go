package consumers

import (
	"cmp"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// waitList is the set of messages that a failing dependency holds back:
// events retried after transient failures (Postgres down), or dead letters
// the broker does not take. It says how many there are and since when
// (metrics, stalls), and logs an episode in a few lines however many
// messages and attempts it has: a warning when a cause appears (at most once
// per cause per logEvery), a summary every logEvery while it lasts, and a
// line when it clears. Each attempt or failure takes its mutex; a message
// that never failed never touches it.
type waitList struct {
	log      *slog.Logger
	logEvery time.Duration
	// stale drops an entry that has neither failed nor been attempted for
	// that long: its message was let go of without the list being told
	// (a partition revoked while the message waited to be delivered again).
	// 0: entries stay until released.
	stale time.Duration
	text  waitText

	mu          sync.Mutex
	entries     map[*waitEntry]struct{}
	warned      map[string]time.Time // cause -> when it was last warned about
	episode     time.Time            // when the list last became non-empty
	joined      int                  // entries that joined during the episode
	lastSummary time.Time
	loud        bool // the episode was logged, so its end is too
}

// waitText is what a waitList's log lines say.
type waitText struct {
	unit    string // what an entry is, plural: "events", "dead letters"
	start   string // a cause appears
	summary string // every logEvery while it lasts
	cleared string // the list is empty again
}

// waitEntry is one message held back. Its owner keeps the pointer with the
// message, so its first failure survives nacks and redeliveries.
type waitEntry struct {
	first    time.Time // first failure
	last     time.Time // last failure or start of an attempt
	cause    string    // of the last failure: short, without secrets
	failures int
	busy     bool // in an attempt: never stale
	listed   bool
}

func newWaitList(log *slog.Logger, stale time.Duration, text waitText) *waitList {
	return &waitList{log: log, logEvery: 30 * time.Second, stale: stale, text: text,
		entries: map[*waitEntry]struct{}{}, warned: map[string]time.Time{}}
}

// fail records a failure of e's message (a new entry when e is nil) with
// cause, and returns the entry.
func (w *waitList) fail(e *waitEntry, cause string, now time.Time) *waitEntry {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e == nil {
		e = &waitEntry{first: now}
	}
	e.cause, e.last, e.busy = cause, now, false
	e.failures++
	w.listLocked(e, now)
	if t, ok := w.warned[cause]; !ok || now.Sub(t) >= w.logEvery {
		w.warned[cause] = now
		w.loud = true
		w.log.Warn(w.text.start, slog.String("cause", cause), slog.Int(w.text.unit, len(w.entries)))
	}
	return e
}

// attempt records that e's message is being tried again.
func (w *waitList) attempt(e *waitEntry, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e.busy, e.last = true, now
	w.listLocked(e, now)
}

func (w *waitList) listLocked(e *waitEntry, now time.Time) {
	if e.listed {
		return
	}
	if len(w.entries) == 0 {
		w.episode, w.joined, w.loud = now, 0, false
	}
	e.listed = true
	w.entries[e] = struct{}{}
	w.joined++
}

// release removes e: its message succeeded, was dead-lettered, or is given
// up (it comes back later).
func (w *waitList) release(e *waitEntry, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.unlistLocked(e, now)
}

func (w *waitList) unlistLocked(e *waitEntry, now time.Time) {
	if !e.listed {
		return
	}
	e.listed = false
	delete(w.entries, e)
	if len(w.entries) == 0 && w.loud {
		w.loud = false
		w.log.Info(w.text.cleared, slog.Duration("after", now.Sub(w.episode).Round(time.Second)), slog.Int(w.text.unit, w.joined))
	}
}

func (w *waitList) pruneLocked(now time.Time) {
	if w.stale <= 0 {
		return
	}
	for e := range w.entries {
		if !e.busy && now.Sub(e.last) > w.stale {
			w.unlistLocked(e, now)
		}
	}
}

// waitState is a waitList at one moment.
type waitState struct {
	n      int
	oldest time.Time // first failure of the oldest entry
	cause  string    // the oldest entry's
}

// state drops stale entries and returns the list's state.
func (w *waitList) state(now time.Time) waitState {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pruneLocked(now)
	return w.stateLocked()
}

func (w *waitList) stateLocked() waitState {
	s := waitState{n: len(w.entries)}
	for e := range w.entries {
		if s.oldest.IsZero() || e.first.Before(s.oldest) {
			s.oldest, s.cause = e.first, e.cause
		}
	}
	return s
}

// tick drops stale entries and logs the summary when it is due.
func (w *waitList) tick(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pruneLocked(now)
	if len(w.entries) == 0 || now.Sub(w.episode) < w.logEvery || now.Sub(w.lastSummary) < w.logEvery {
		return
	}
	w.lastSummary, w.loud = now, true
	s := w.stateLocked()
	w.log.Warn(w.text.summary, slog.Int(w.text.unit, s.n), slog.Duration("oldest_for", now.Sub(s.oldest).Round(time.Second)),
		slog.String("causes", w.causesLocked()))
}

// causesLocked lists the causes by number of entries, the three most common.
func (w *waitList) causesLocked() string {
	count := map[string]int{}
	for e := range w.entries {
		count[e.cause]++
	}
	causes := slices.SortedFunc(maps.Keys(count), func(a, b string) int {
		return cmp.Or(cmp.Compare(count[b], count[a]), cmp.Compare(a, b))
	})
	var b strings.Builder
	for i, c := range causes {
		if i == 3 {
			fmt.Fprintf(&b, "; %d more", len(causes)-3)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s (%d)", c, count[c])
	}
	return b.String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
