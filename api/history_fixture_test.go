package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/roomcast/roomcast/api"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/fakepusher"
	"github.com/roomcast/roomcast/internal/testsupport"
	"github.com/roomcast/roomcast/projections"
	"github.com/roomcast/roomcast/publishers"
)

// testUser is the header the history tests identify users by.
const testUser = "X-Test-User"

// headerIdentity takes the user id from testUser.
type headerIdentity struct{}

func (headerIdentity) UserID(r *http.Request) (string, error) {
	if id := r.Header.Get(testUser); id != "" {
		return id, nil
	}
	return "", errors.New("no " + testUser)
}

// histFixture is a fresh database with a projector writing it and roomcast
// api reading it over HTTP.
type histFixture struct {
	t         *testing.T
	db        *gorm.DB
	projector *projections.Projector
	outbox    *projections.Outbox
	api       *httptest.Server
}

func newHistFixture(t *testing.T, maxPage int) *histFixture {
	t.Helper()
	db, _ := testsupport.Database(t, 8)
	srv := httptest.NewServer(api.New(api.Config{DB: db, Identity: headerIdentity{}, MaxPage: maxPage}).Handler())
	t.Cleanup(srv.Close)
	return &histFixture{t: t, db: db, projector: projections.NewProjector(db, nil, nil), outbox: projections.NewOutbox(db), api: srv}
}

// project projects events one batch each, as they arrive one by one.
func (f *histFixture) project(events ...*chattest.Event) {
	f.t.Helper()
	for _, e := range events {
		rs, err := f.projector.ProjectBatch(context.Background(), []projections.Item{{Env: e.Envelope(f.t), Origin: projections.Origin{Partition: -1}}})
		if err != nil || rs[0].Err != nil {
			f.t.Fatalf("project %s %s: %v %v", e.Type, e.ID, err, rs)
		}
	}
}

// get answers GET path as user ("" for no identity), with extra headers.
func (f *histFixture) get(user, path string, header ...string) (int, http.Header, []byte) {
	f.t.Helper()
	req, err := http.NewRequest(http.MethodGet, f.api.URL+path, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	if user != "" {
		req.Header.Set(testUser, user)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}

// getJSON answers GET path as user, failing unless 200, decoded into v.
func (f *histFixture) getJSON(user, path string, v any) {
	f.t.Helper()
	status, _, body := f.get(user, path)
	if status != http.StatusOK {
		f.t.Fatalf("GET %s as %s: %d %s", path, user, status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		f.t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

// feedPage is the events endpoint's answer, payloads kept as their bytes.
type feedPage struct {
	RoomID  string `json:"roomId"`
	LastSeq int64  `json:"lastSeq"`
	More    bool   `json:"more"`
	Events  []struct {
		Seq   int64           `json:"seq"`
		Event string          `json:"event"`
		Data  json.RawMessage `json:"data"`
	} `json:"events"`
}

// pusherFixture adds a fake Pusher and the real dispatcher sending the
// outbox to it through pusher-http-go.
type pusherFixture struct {
	*histFixture
	pusher *fakepusher.Server
}

func newPusherFixture(t *testing.T) *pusherFixture {
	t.Helper()
	srv, err := fakepusher.Start(fakepusher.Config{AppID: "4242", Key: "test-key", Secret: "test-secret"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return &pusherFixture{histFixture: newHistFixture(t, 0), pusher: srv}
}

// dispatch runs a dispatcher over the outbox until the returned stop.
func (f *pusherFixture) dispatch() (stop func()) {
	client := publishers.NewClient(publishers.ClientConfig{AppID: "4242", Key: "test-key", Secret: "test-secret", Host: f.pusher.Host()})
	d := publishers.NewDispatcher(f.outbox, client, publishers.DispatcherConfig{PollInterval: 20 * time.Millisecond,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	f.projector.OnDeliveriesOwed(d.Wake)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				f.t.Errorf("dispatcher: %v", err)
			}
			f.projector.OnDeliveriesOwed(nil)
		})
	}
	f.t.Cleanup(stop)
	return stop
}

// settle waits until the outbox owes nothing.
func (f *pusherFixture) settle() {
	f.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := f.outbox.Backlog(context.Background())
		if err != nil {
			f.t.Fatal(err)
		}
		if b.Pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("the outbox still owes %+v", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
