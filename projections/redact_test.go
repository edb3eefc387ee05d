package projections_test

import (
	"context"
	"strings"
	"testing"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/projections"
)

// redactedPayload is the payload a message event's delivery with seq has
// once a delete emptied its text: RoomDelivery's for the event with empty
// content, which is the unredacted payload (when not truncated) with its
// content emptied and "redacted":true appended.
func redactedPayload(t *testing.T, e *chattest.Event, seq int64) string {
	t.Helper()
	env := e.Envelope(t)
	full, err := domain.RoomDelivery(env, seq)
	if err != nil {
		t.Fatal(err)
	}
	var content string
	switch ev := env.Event.(type) {
	case domain.MessageCreated:
		content, ev.Content = ev.Content, ""
		env.Event = ev
	case domain.MessageEdited:
		content, ev.Content = ev.Content, ""
		env.Event = ev
	default:
		t.Fatalf("%s carries no text", env.Type)
	}
	d, err := domain.RoomDelivery(env, seq)
	if err != nil {
		t.Fatal(err)
	}
	if !full.Truncated {
		text, _ := domain.MarshalPayload(content)
		byHand := strings.TrimSuffix(strings.Replace(full.Data, `"content":`+string(text), `"content":""`, 1), "}") + `,"redacted":true}`
		if d.Data != byHand {
			t.Fatalf("RoomDelivery of the emptied event:\n got  %s\n want %s", d.Data, byHand)
		}
	}
	return d.Data
}

// checkRedacted fails t unless d is the delivery of e with seq, redacted.
func checkRedacted(t *testing.T, d domain.Delivery, e *chattest.Event, seq int64) {
	t.Helper()
	if want := redactedPayload(t, e, seq); d.Data != want {
		t.Errorf("pending %s of a deleted message:\n got  %s\n want %s", d.Name, d.Data, want)
	}
	if d.Truncated {
		t.Errorf("pending %s of a deleted message is still flagged truncated", d.Name)
	}
}

// pendingOf returns the pending deliveries of the given event ids, by id.
func (f *fixture) pendingOf(ids ...string) map[string]domain.Delivery {
	f.t.Helper()
	out := map[string]domain.Delivery{}
	for _, d := range f.pending() {
		for _, id := range ids {
			if d.EventID == id {
				out[id] = d
			}
		}
	}
	return out
}

// A truncated message deleted before its delivery went out is owed without
// its text and without "truncated" (the payload and the outbox's flag):
// there is no text left for the client to fetch. Deleted in the batch that
// created it or in a later one.
func TestDeleteOfTruncatedMessageDropsTruncated(t *testing.T) {
	for _, sameBatch := range []bool{false, true} {
		name := "delete in a later batch"
		if sameBatch {
			name = "delete in the same batch"
		}
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			big := chattest.MessageCreated("r1", "m-big", strings.Repeat("秘", 4000))
			bigEdit := chattest.MessageEdited("r1", "m-big", strings.Repeat("密", 4000))
			keep := chattest.MessageCreated("r1", "m-keep", strings.Repeat("保", 4000))
			del := chattest.MessageDeleted("r1", "m-big")
			first := []*chattest.Event{big, bigEdit, keep}
			if sameBatch {
				first = append(first, del)
			}
			f.projectBatch(first...)
			if !sameBatch {
				if d := f.pendingOf(big.ID)[big.ID]; !d.Truncated {
					t.Fatalf("a 12 KB message was not truncated: %.100s", d.Data)
				}
				f.projectBatch(del)
			}
			got := f.pendingOf(big.ID, bigEdit.ID, keep.ID)
			checkRedacted(t, got[big.ID], big, 1)
			checkRedacted(t, got[bigEdit.ID], bigEdit, 2)
			if d := got[keep.ID]; !d.Truncated || !strings.Contains(d.Data, `"truncated":true}`) || strings.Contains(d.Data, "redacted") {
				t.Errorf("another truncated message's delivery was changed: truncated %v, %.80s...%s",
					d.Truncated, d.Data, d.Data[max(0, len(d.Data)-40):])
			}
		})
	}
}

// Only deliveries Pusher has not accepted are redacted: one already
// delivered (kept with delivered_at) is left as it was sent, and the others
// of the message are redacted.
func TestDeleteRedactsOnlyUndeliveredDeliveries(t *testing.T) {
	f := newFixture(t)
	f.outbox.KeepDelivered()
	create := chattest.MessageCreated("r1", "m1", "sent already")
	edit := chattest.MessageEdited("r1", "m1", "not sent yet")
	f.projectBatch(create)
	sent := f.pendingOf(create.ID)[create.ID]
	if err := f.outbox.MarkDelivered(context.Background(), []int64{sent.ID}); err != nil {
		t.Fatal(err)
	}
	f.projectBatch(edit)
	f.projectBatch(chattest.MessageDeleted("r1", "m1"))
	var data string
	if err := f.db.Raw(`SELECT data FROM deliveries WHERE id = ? AND delivered_at IS NOT NULL`, sent.ID).Scan(&data).Error; err != nil {
		t.Fatal(err)
	}
	if data != sent.Data {
		t.Errorf("the delivered new-message was rewritten:\n got  %s\n want %s", data, sent.Data)
	}
	checkRedacted(t, f.pendingOf(edit.ID)[edit.ID], edit, 2)
}

func (f *fixture) projectBatch(events ...*chattest.Event) {
	f.t.Helper()
	items := make([]projections.Item, len(events))
	for i, e := range events {
		items[i] = projections.Item{Env: e.Envelope(f.t), Origin: noKafka}
	}
	results, err := f.p.ProjectBatch(context.Background(), items)
	if err != nil {
		f.t.Fatal(err)
	}
	for i, r := range results {
		if r.Err != nil {
			f.t.Fatalf("project %s: %v", events[i].Type, r.Err)
		}
	}
}

// A message created (and edited) and deleted in one batch has its
// deliveries written once, already redacted: the delete costs no update of
// their outbox rows. Deleted in a later batch, they are updated once each.
func TestDeleteInTheSameBatchWritesDeliveriesOnce(t *testing.T) {
	f := newFixture(t)
	for _, q := range []string{
		`CREATE TABLE delivery_updates (id bigint)`,
		`CREATE FUNCTION log_delivery_update() RETURNS trigger LANGUAGE plpgsql AS
			$$ BEGIN INSERT INTO delivery_updates VALUES (OLD.id); RETURN NEW; END $$`,
		`CREATE TRIGGER log_delivery_update BEFORE UPDATE ON deliveries FOR EACH ROW EXECUTE FUNCTION log_delivery_update()`,
	} {
		if err := f.db.Exec(q).Error; err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	create := chattest.MessageCreated("r1", "m1", "secret")
	edit := chattest.MessageEdited("r1", "m1", "secret edited")
	f.projectBatch(create, edit, chattest.MessageDeleted("r1", "m1"))
	got := f.pendingOf(create.ID, edit.ID)
	checkRedacted(t, got[create.ID], create, 1)
	checkRedacted(t, got[edit.ID], edit, 2)
	if n := f.count("delivery_updates", ""); n != 0 {
		t.Errorf("%d updates of deliveries, want 0: they were copied redacted", n)
	}

	later := chattest.MessageCreated("r1", "m2", "secret too")
	f.projectBatch(later, chattest.MessageCreated("r1", "m3", "kept"))
	f.projectBatch(chattest.MessageDeleted("r1", "m2"))
	checkRedacted(t, f.pendingOf(later.ID)[later.ID], later, 4)
	if n := f.count("delivery_updates", ""); n != 1 {
		t.Errorf("%d updates of deliveries, want 1 (the new-message of m2)", n)
	}
}
