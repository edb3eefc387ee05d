package projections_test

import (
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/projections"
)

var redriven = projections.Origin{Partition: -1, Redriven: true}

func (f *fixture) batch(items ...projections.Item) []projections.Outcome {
	f.t.Helper()
	results, err := f.p.ProjectBatch(f.t.Context(), items)
	if err != nil {
		f.t.Fatal(err)
	}
	out := make([]projections.Outcome, len(results))
	for i, r := range results {
		if r.Err != nil {
			f.t.Fatalf("item %d: %v", i, r.Err)
		}
		out[i] = r.Outcome
	}
	return out
}

// A re-driven edit applies only if it is not older than its message's
// state (edited_at, created_at), in a batch of its own or behind a live
// edit of the same batch; an older one is recorded unchanged (no seq, no
// delivery) and its text is still redacted when the message is deleted.
// Live edits keep partition order whatever their times.
func TestRedrivenEditNeverMovesTextBackwards(t *testing.T) {
	f := newFixture(t)
	at := func(e *chattest.Event, ts time.Time) *chattest.Event {
		return e.With("editedAt", domain.FormatTime(ts))
	}
	base := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	item := func(e *chattest.Event, src projections.Origin) projections.Item {
		return projections.Item{Env: e.Envelope(t), Origin: src}
	}
	created := chattest.MessageCreated("r1", "m1", "original").With("createdAt", domain.FormatTime(base))
	f.batch(item(created, noKafka))
	t3 := at(chattest.MessageEdited("r1", "m1", "third"), base.Add(3*time.Minute))
	f.batch(item(t3, noKafka))

	beforeCreate := at(chattest.MessageEdited("r1", "m1", "before its message"), base.Add(-time.Minute))
	second := at(chattest.MessageEdited("r1", "m1", "second"), base.Add(2*time.Minute))
	if got := f.batch(item(second, redriven), item(beforeCreate, redriven)); got[0] != projections.Unchanged || got[1] != projections.Unchanged {
		t.Errorf("older re-driven edits: %v, want unchanged", got)
	}
	if m := f.message("m1"); m.Content != "third" {
		t.Errorf("text %q after older re-driven edits, want third", m.Content)
	}
	// Same batch: a live edit, then an older re-driven one.
	t5 := at(chattest.MessageEdited("r1", "m1", "fifth"), base.Add(5*time.Minute))
	t4 := at(chattest.MessageEdited("r1", "m1", "fourth"), base.Add(4*time.Minute))
	if got := f.batch(item(t5, noKafka), item(t4, redriven)); got[0] != projections.Applied || got[1] != projections.Unchanged {
		t.Errorf("live then older re-driven edit: %v, want applied, unchanged", got)
	}
	// A re-driven edit as new as the state applies; a live older one too.
	t6 := at(chattest.MessageEdited("r1", "m1", "sixth"), base.Add(6*time.Minute))
	t1 := at(chattest.MessageEdited("r1", "m1", "live but older"), base.Add(time.Minute))
	if got := f.batch(item(t6, redriven)); got[0] != projections.Applied {
		t.Errorf("newer re-driven edit: %v, want applied", got)
	}
	if got := f.batch(item(t1, noKafka)); got[0] != projections.Applied {
		t.Errorf("older live edit: %v, want applied (partition order)", got)
	}
	if m := f.message("m1"); m.Content != "live but older" || m.Seq != 1 {
		t.Errorf("message %q seq %d", m.Content, m.Seq)
	}
	for _, e := range []*chattest.Event{second, beforeCreate, t4} {
		if ev := f.event(e.ID); ev.Seq != nil {
			t.Errorf("stale re-driven edit %s got seq %d", e.ID, *ev.Seq)
		}
		if n := f.count("deliveries", "event_id = ?", e.ID); n != 0 {
			t.Errorf("stale re-driven edit %s owes %d deliveries", e.ID, n)
		}
	}
	f.batch(item(chattest.MessageDeleted("r1", "m1"), noKafka))
	for _, e := range []*chattest.Event{second, beforeCreate, t4} {
		if ev := f.event(e.ID); strings.Contains(ev.Data, e.Data["content"].(string)) {
			t.Errorf("stale re-driven edit %s keeps its text after the delete: %s", e.ID, ev.Data)
		}
	}
}
