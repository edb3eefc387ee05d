package consumers

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// countLevel counts the lines of a text log at level.
func countLevel(log string, level string) int {
	return strings.Count(log, " level="+level+" ")
}

// However many events fail and however often, an episode is a few lines:
// one warning per cause, a summary every 30 s, one line when it clears.
// The oldest first failure survives later failures and attempts.
func TestWaitListLogsAnEpisodeInAFewLines(t *testing.T) {
	var buf bytes.Buffer
	w := newWaitList(slog.New(slog.NewTextHandler(&buf, nil)), time.Minute, waitText{
		unit: "events", start: "failing", summary: "still failing", cleared: "no longer failing",
	})
	start := time.Now()
	entries := make([]*waitEntry, 1000)
	for round := range 20 { // 20 rounds of retries, 3 s apart, of 1000 events
		now := start.Add(time.Duration(round) * 3 * time.Second)
		for i := range entries {
			if entries[i] != nil {
				w.attempt(entries[i], now)
			}
			cause := "postgres unavailable: connection refused"
			if i%10 == 0 {
				cause = "postgres: SQLSTATE 57P01 (admin shutdown)"
			}
			entries[i] = w.fail(entries[i], cause, now)
		}
		w.tick(now)
	}
	now := start.Add(60 * time.Second)
	s := w.state(now)
	if s.n != 1000 || !s.oldest.Equal(start) {
		t.Errorf("state: %d entries, oldest %v; want 1000 since the first failure %v", s.n, s.oldest, start)
	}
	// 57 s of failures: each cause warned at 0 s and again at 30 s, one summary at 30 s.
	if warn := countLevel(buf.String(), "WARN"); warn != 5 {
		t.Errorf("%d warnings for 20,000 failures, want 5:\n%s", warn, buf.String())
	}
	for _, e := range entries {
		w.release(e, now)
	}
	if info := countLevel(buf.String(), "INFO"); info != 1 || !strings.Contains(buf.String(), "no longer failing") {
		t.Errorf("%d info lines when the episode cleared, want 1:\n%s", info, buf.String())
	}
	if s := w.state(now); s.n != 0 {
		t.Errorf("%d entries after releasing them all", s.n)
	}

	// An entry neither failing nor attempted for longer than stale was let
	// go of; one being attempted stays.
	idle := w.fail(nil, "x", now)
	busy := w.fail(nil, "x", now)
	w.attempt(busy, now)
	if s := w.state(now.Add(2 * time.Minute)); s.n != 1 || idle.listed || !busy.listed {
		t.Errorf("after the stale time: %d entries (idle listed %v, busy listed %v), want only the busy one", s.n, idle.listed, busy.listed)
	}
	// It comes back, its first failure kept, when it is tried again.
	w.attempt(idle, now.Add(3*time.Minute))
	if s := w.state(now.Add(3 * time.Minute)); s.n != 2 || !s.oldest.Equal(now) {
		t.Errorf("after the idle entry came back: %d entries since %v, want 2 since %v", s.n, s.oldest, now)
	}
}
