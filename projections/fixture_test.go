package projections_test

import (
	"context"
	"encoding/json"
	"testing"

	"gorm.io/gorm"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/testsupport"
	"github.com/roomcast/roomcast/projections"
)

// fixture is a throwaway database with a Projector and an Outbox on it.
type fixture struct {
	t      *testing.T
	url    string
	db     *gorm.DB
	p      *projections.Projector
	outbox *projections.Outbox
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db, url := testsupport.Database(t, 5)
	return &fixture{t: t, url: url, db: db, p: projections.NewProjector(db, nil, nil), outbox: projections.NewOutbox(db)}
}

var noKafka = projections.Origin{Partition: -1}

// projectOne projects env alone, in a batch of one, as the worker does
// with an event that arrives on its own.
func (f *fixture) projectOne(env domain.Envelope, origin projections.Origin) (projections.Outcome, error) {
	f.t.Helper()
	results, err := f.p.ProjectBatch(context.Background(), []projections.Item{{Env: env, Origin: origin}})
	if err != nil {
		return 0, err
	}
	return results[0].Outcome, results[0].Err
}

func (f *fixture) project(e *chattest.Event) projections.Outcome {
	f.t.Helper()
	out, err := f.projectOne(e.Envelope(f.t), noKafka)
	if err != nil {
		f.t.Fatalf("project %s: %v", e.Type, err)
	}
	return out
}

func (f *fixture) expect(e *chattest.Event, want projections.Outcome) {
	f.t.Helper()
	if got := f.project(e); got != want {
		f.t.Fatalf("project %s %s: outcome %v, want %v", e.Type, e.ID, got, want)
	}
}

func (f *fixture) message(id string) projections.Message {
	f.t.Helper()
	var m projections.Message
	if err := f.db.First(&m, "id = ?", id).Error; err != nil {
		f.t.Fatalf("message %s: %v", id, err)
	}
	return m
}

func (f *fixture) event(id string) projections.StoredEvent {
	f.t.Helper()
	var e projections.StoredEvent
	if err := f.db.First(&e, "id = ?", id).Error; err != nil {
		f.t.Fatalf("event %s: %v", id, err)
	}
	return e
}

func (f *fixture) count(table, where string, args ...any) int64 {
	f.t.Helper()
	var n int64
	q := f.db.Table(table)
	if where != "" {
		q = q.Where(where, args...)
	}
	if err := q.Count(&n).Error; err != nil {
		f.t.Fatal(err)
	}
	return n
}

func (f *fixture) pending() []domain.Delivery {
	f.t.Helper()
	ds, err := f.outbox.Pending(context.Background(), 10000)
	if err != nil {
		f.t.Fatal(err)
	}
	return ds
}

func payload(t *testing.T, d domain.Delivery) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(d.Data), &m); err != nil {
		t.Fatalf("delivery %d data %q: %v", d.ID, d.Data, err)
	}
	return m
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
