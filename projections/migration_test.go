package projections_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/migrations"
	"github.com/roomcast/roomcast/projections"
)

// Migration 00005 replaces the events_message index with messages.event_ids,
// and 00007 the deliveries_undelivered_event index with events.delivery_id.
// A database migrated from before them keeps its deletes complete: the
// upgrade lists each existing message's stored creates and edits (in the
// order recorded) and links each owed delivery to its event, and a later
// delete redacts them all.
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
	for _, want := range []int64{8, 7, 6, 5} {
		if v, err := m.Down(ctx); err != nil || v != want {
			t.Fatalf("down: version %d, %v; want %05d rolled back", v, err, want)
		}
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
	// Migration 00007 linked the owed deliveries to their events (they were
	// written before it): the delete redacted them too.
	var owed []struct{ EventID, Data string }
	if err := f.db.Raw(`SELECT event_id, data FROM deliveries WHERE event_id IN (?, ?)`, create.ID, edit.ID).Scan(&owed).Error; err != nil {
		t.Fatal(err)
	}
	if len(owed) != 2 {
		t.Fatalf("%d deliveries of m1's create and edit, want 2", len(owed))
	}
	for _, d := range owed {
		if strings.Contains(d.Data, "secret") {
			t.Errorf("delivery of %s owed before the upgrade keeps deleted text: %s", d.EventID, d.Data)
		}
	}
	if ev := f.event(other.ID); !strings.Contains(ev.Data, "keep me") {
		t.Errorf("another message's event was redacted: %s", ev.Data)
	}
}

// Migration 00006: batches reserve their deliveries' ids in blocks of the
// sequence's step. Ids stay unique and rise in commit order, whatever the
// batches' sizes (one, a few, more than a block); the handover sees the ids
// that were stored; and a dry-run replay that notifies reserves them from
// its temporary outbox.
func TestBatchesReserveDeliveryIDs(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var handed [][]int64
	f.p.HandOffDeliveries(func(ds []domain.Delivery) bool {
		ids := make([]int64, len(ds))
		for i, d := range ds {
			ids[i] = d.ID
		}
		handed = append(handed, ids)
		return true
	})
	msg := 0
	next := func() string { msg++; return fmt.Sprintf("m%d", msg) }
	batch := func(n int, room string) {
		t.Helper()
		items := make([]projections.Item, n)
		for i := range items {
			items[i] = projections.Item{Env: chattest.MessageCreated(room, next(), "hi").Envelope(t), Origin: projections.Origin{Partition: -1}}
		}
		if _, err := f.p.ProjectBatch(ctx, items); err != nil {
			t.Fatal(err)
		}
	}
	batch(3, "r1")
	batch(1, "r1")
	batch(1500, "r1") // more than one block
	batch(2, "r2")
	var rows []struct {
		ID  int64
		Seq int64
	}
	if err := f.db.Raw(`SELECT id, seq FROM deliveries WHERE room_id = 'r1' ORDER BY seq`).Scan(&rows).Error; err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1504 {
		t.Fatalf("%d deliveries in r1, want 1504", len(rows))
	}
	for i := 1; i < len(rows); i++ {
		if rows[i].ID <= rows[i-1].ID {
			t.Fatalf("r1 seq %d has id %d, not above seq %d's %d", rows[i].Seq, rows[i].ID, rows[i-1].Seq, rows[i-1].ID)
		}
	}
	var stored []int64
	if err := f.db.Raw(`SELECT id FROM deliveries ORDER BY id`).Scan(&stored).Error; err != nil {
		t.Fatal(err)
	}
	var all []int64
	for _, ids := range handed {
		all = append(all, ids...)
	}
	if len(handed) != 4 || len(all) != 1506 {
		t.Fatalf("handed over %d batches of %d deliveries, want 4 of 1506", len(handed), len(all))
	}
	for _, id := range all {
		if _, found := slices.BinarySearch(stored, id); !found {
			t.Fatalf("handed over delivery id %d, which is not stored", id)
		}
	}

	r, err := projections.NewReplayer(ctx, f.db, projections.ReplayOptions{Notify: true, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	items := []projections.Item{{Env: chattest.MessageCreated("r3", next(), "dry").Envelope(t), Origin: projections.Origin{Partition: -1}}}
	if _, err := r.Project(ctx, items); err != nil {
		t.Fatalf("dry-run replay with notify: %v", err)
	}
	changes, err := r.Changes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		if c.Table == "deliveries" && c.Added != 1 {
			t.Errorf("dry run added %d deliveries, want 1", c.Added)
		}
	}
	if n := f.count("deliveries", "room_id = 'r3'"); n != 0 {
		t.Errorf("the dry run wrote %d deliveries to the live outbox", n)
	}
}
