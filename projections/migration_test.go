package projections_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/migrations"
	"github.com/roomcast/roomcast/projections"
)

// Migration 00005 replaces the events_message index with messages.event_ids.
// A database migrated from before it keeps its deletes complete: the upgrade
// lists each existing message's stored creates and edits (in the order
// recorded), and a later delete redacts them all.
func TestUpgradeListsExistingMessageEvents(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	create := chattest.MessageCreated("r1", "m1", "my secret")
	edit := chattest.MessageEdited("r1", "m1", "my edited secret")
	again := chattest.MessageCreated("r1", "m1", "my secret again")
	other := chattest.MessageCreated("r1", "m2", "keep me")
	for _, e := range []*chattest.Event{create, edit, again, other} {
		f.project(e)
	}
	sqlDB, err := projections.SQL(f.db)
	if err != nil {
		t.Fatal(err)
	}
	m, err := migrations.New(sqlDB)
	if err != nil {
		t.Fatal(err)
	}
	// Back to before 00005 (the index back, the lists gone), then up again.
	if v, err := m.Down(ctx); err != nil || v != 5 {
		t.Fatalf("down: version %d, %v; want 00005 rolled back", v, err)
	}
	if n := f.count("pg_indexes", "indexname = 'events_message'"); n != 1 {
		t.Fatalf("events_message after rolling 00005 back: %d indexes, want 1", n)
	}
	if _, err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.count("pg_indexes", "indexname = 'events_message'"); n != 0 {
		t.Errorf("events_message still there after 00005")
	}
	lists := map[string][]string{}
	var rows []struct {
		ID  string
		IDs string
	}
	if err := f.db.Raw(`SELECT id, array_to_string(event_ids, ',') AS ids FROM messages`).Scan(&rows).Error; err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		lists[r.ID] = strings.Split(r.IDs, ",")
	}
	if want := []string{create.ID, edit.ID, again.ID}; !slices.Equal(lists["m1"], want) {
		t.Errorf("m1 event_ids = %v, want %v", lists["m1"], want)
	}
	if want := []string{other.ID}; !slices.Equal(lists["m2"], want) {
		t.Errorf("m2 event_ids = %v, want %v", lists["m2"], want)
	}
	f.expect(chattest.MessageDeleted("r1", "m1"), projections.Applied)
	for _, e := range []*chattest.Event{create, edit, again} {
		if ev := f.event(e.ID); strings.Contains(ev.Data, "secret") {
			t.Errorf("event %s stored before the upgrade keeps deleted text: %s", ev.Type, ev.Data)
		}
	}
	if ev := f.event(other.ID); !strings.Contains(ev.Data, "keep me") {
		t.Errorf("another message's event was redacted: %s", ev.Data)
	}
}
