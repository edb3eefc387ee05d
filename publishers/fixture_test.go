package publishers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/fakepusher"
	"github.com/roomcast/roomcast/internal/testsupport"
	"github.com/roomcast/roomcast/projections"
	"github.com/roomcast/roomcast/publishers"
)

const (
	appID     = "4242"
	appKey    = "test-key"
	appSecret = "test-secret"

	// waitLimit bounds every wait on a condition.
	waitLimit = 20 * time.Second
)

var noKafka = projections.Origin{Partition: -1}

// fixture is one test's stack: a fresh database with the migrations applied,
// the projector, the outbox, a fake Pusher, the real pusher-http-go client
// pointed at it and a dispatcher between them.
type fixture struct {
	t          *testing.T
	dbURL      string
	db         *gorm.DB
	projector  *projections.Projector
	outbox     *projections.Outbox
	srv        *fakepusher.Server
	client     publishers.Pusher
	dispatcher *publishers.Dispatcher
	stop       func() error // stops the dispatcher last started
}

var dispatcherConfig = publishers.DispatcherConfig{
	PollInterval: 20 * time.Millisecond,
	MinBackoff:   20 * time.Millisecond,
	MaxBackoff:   200 * time.Millisecond,
}

// newFixture returns a fixture whose dispatcher is running.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := newIdleFixture(t)
	f.start()
	return f
}

// newIdleFixture returns a fixture whose dispatcher is not started yet (see start).
func newIdleFixture(t *testing.T) *fixture {
	t.Helper()
	srv, err := fakepusher.Start(fakepusher.Config{AppID: appID, Key: appKey, Secret: appSecret})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })

	db, dbURL := testsupport.Database(t, 10)
	f := &fixture{
		t:         t,
		dbURL:     dbURL,
		db:        db,
		projector: projections.NewProjector(db, nil, nil),
		outbox:    projections.NewOutbox(db).KeepDelivered(), // the tests count what was delivered
		srv:       srv,
		client: publishers.NewClient(publishers.ClientConfig{
			AppID: appID, Key: appKey, Secret: appSecret, Host: srv.Host(), UseTLS: false,
		}),
	}
	f.useDispatcher(f.client)
	return f
}

// useDispatcher replaces the (not yet started) dispatcher by one calling p.
func (f *fixture) useDispatcher(p publishers.Pusher) {
	f.dispatcher = publishers.NewDispatcher(f.outbox, p, dispatcherConfig)
	f.projector.OnDeliveriesOwed(f.dispatcher.Wake)
}

// start runs the dispatcher until the returned stop is called or the test
// ends. stop cancels Run's context, waits for Run to return and returns its
// error.
func (f *fixture) start() (stop func() error) {
	f.stop = run(f.t, f.dispatcher)
	return f.stop
}

// run runs d until the returned stop is called or the test ends.
func run(t *testing.T, d *publishers.Dispatcher) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var (
		once   sync.Once
		runErr error
	)
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(waitLimit):
				runErr = fmt.Errorf("dispatcher Run did not return within %v of its context's end", waitLimit)
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("dispatcher Run: %v", err)
		}
	})
	return stop
}

// project projects e and fails the test when that fails.
func (f *fixture) project(e *chattest.Event) projections.Outcome {
	f.t.Helper()
	out, err := projectOne(f.t.Context(), f.projector, e.Envelope(f.t), noKafka)
	if err != nil {
		f.t.Fatalf("project %s %s: %v", e.Type, e.ID, err)
	}
	return out
}

// projectOne projects env alone, in a batch of one, as the worker does
// with an event that arrives on its own.
func projectOne(ctx context.Context, p *projections.Projector, env domain.Envelope, origin projections.Origin) (projections.Outcome, error) {
	results, err := p.ProjectBatch(ctx, []projections.Item{{Env: env, Origin: origin}})
	if err != nil {
		return 0, err
	}
	return results[0].Outcome, results[0].Err
}

// waitEvents waits until the fake Pusher has recorded at least n events.
func (f *fixture) waitEvents(n int) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.t.Context(), waitLimit)
	defer cancel()
	if err := f.srv.WaitForEvents(ctx, n); err != nil {
		f.t.Fatalf("waiting for %d Pusher events: %v (backlog %+v)", n, err, f.backlog())
	}
}

// eventually polls cond every 10ms until it holds, failing the test after waitLimit.
func (f *fixture) eventually(what string, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("timed out after %v waiting for %s (backlog %+v)", waitLimit, what, f.backlog())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitSettled waits until no delivery is pending.
func (f *fixture) waitSettled() projections.Backlog {
	f.t.Helper()
	var b projections.Backlog
	f.eventually("an empty outbox", func() bool {
		b = f.backlog()
		return b.Pending == 0
	})
	return b
}

func (f *fixture) backlog() projections.Backlog {
	b, err := f.outbox.Backlog(context.Background())
	if err != nil {
		f.t.Errorf("backlog: %v", err)
	}
	return b
}

// deliveries returns the outbox rows of an event, in id order.
func (f *fixture) deliveries(eventID string) []projections.DeliveryRow {
	f.t.Helper()
	var rows []projections.DeliveryRow
	if err := f.db.Where("event_id = ?", eventID).Order("id").Find(&rows).Error; err != nil {
		f.t.Fatalf("deliveries of %s: %v", eventID, err)
	}
	return rows
}

// message returns the messages row of id.
func (f *fixture) message(id string) projections.Message {
	f.t.Helper()
	var m projections.Message
	if err := f.db.First(&m, "id = ?", id).Error; err != nil {
		f.t.Fatalf("message %s: %v", id, err)
	}
	return m
}

// calls returns the fake's answered calls to one endpoint ("events" or "batch_events").
func (f *fixture) calls(endpoint string) []fakepusher.Call {
	var out []fakepusher.Call
	for _, c := range f.srv.Calls() {
		if c.Path == "/apps/"+appID+"/"+endpoint {
			out = append(out, c)
		}
	}
	return out
}

// payload decodes a Pusher event's data.
func payload(t *testing.T, e fakepusher.Event) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(e.Data), &m); err != nil {
		t.Fatalf("event %s on %s: data is not a JSON object: %v (%q)", e.Name, e.Channel, err, e.Data)
	}
	return m
}

// seqs returns the seq of every event on channel that carries one, in the
// order Pusher accepted them.
func seqs(t *testing.T, srv *fakepusher.Server, channel string) []int64 {
	t.Helper()
	var out []int64
	for _, e := range srv.EventsOn(channel) {
		if s, ok := payload(t, e)["seq"].(float64); ok {
			out = append(out, int64(s))
		}
	}
	return out
}

// oneToN is 1, 2, ..., n.
func oneToN(n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i + 1)
	}
	return out
}

// canonical re-encodes JSON (a string holding JSON, or a value) with sorted keys.
func canonical(t *testing.T, v any) string {
	t.Helper()
	if s, ok := v.(string); ok {
		var decoded any
		if err := json.Unmarshal([]byte(s), &decoded); err != nil {
			t.Fatalf("not JSON: %v (%q)", err, s)
		}
		v = decoded
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// projectRooms projects, for each room concurrently, perRoom events built by
// build(room, i) with i = 1..perRoom, in order within each room.
func (f *fixture) projectRooms(rooms []string, perRoom int, build func(room string, i int) *chattest.Event) {
	f.t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(rooms))
	for _, room := range rooms {
		envs := make([]*chattest.Event, perRoom)
		for i := range envs {
			envs[i] = build(room, i+1)
		}
		wg.Go(func() {
			for _, e := range envs {
				env, err := decode(e)
				if err != nil {
					errs <- err
					return
				}
				if out, err := projectOne(f.t.Context(), f.projector, env, noKafka); err != nil {
					errs <- fmt.Errorf("project %s in %s: %w", e.ID, room, err)
					return
				} else if out != projections.Applied {
					errs <- fmt.Errorf("project %s in %s: outcome %v, want applied", e.ID, room, out)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		f.t.Error(err)
	}
	if f.t.Failed() {
		f.t.FailNow()
	}
}

// decode is chattest's Envelope for goroutines (it returns the error instead of failing the test).
func decode(e *chattest.Event) (domain.Envelope, error) {
	env, err := domain.Decode(e.JSON())
	if err != nil {
		return domain.Envelope{}, fmt.Errorf("chattest event %s does not decode: %w", e.ID, err)
	}
	return env, nil
}
