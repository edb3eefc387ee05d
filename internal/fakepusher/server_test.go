package fakepusher_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pusher "github.com/pusher/pusher-http-go/v5"

	"github.com/roomcast/roomcast/internal/fakepusher"
)

const (
	appID  = "4242"
	key    = "test-key"
	secret = "test-secret"
)

func start(t *testing.T, mutate ...func(*fakepusher.Config)) *fakepusher.Server {
	t.Helper()
	cfg := fakepusher.Config{AppID: appID, Key: key, Secret: secret}
	for _, m := range mutate {
		m(&cfg)
	}
	s, err := fakepusher.Start(cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// newClient returns the real pusher-http-go client pointed at s (HTTPClient always set: a nil one is assigned lazily, racily).
func newClient(s *fakepusher.Server) *pusher.Client {
	return &pusher.Client{
		AppID:      appID,
		Key:        key,
		Secret:     secret,
		Host:       s.Host(),
		Secure:     false,
		HTTPClient: &http.Client{Timeout: 5 * time.Second},
	}
}

// raw describes a hand-built request signed the way pusher-http-go signs.
type raw struct {
	method    string
	path      string
	body      []byte
	key       string
	secret    string
	timestamp int64
	version   string
	md5Body   []byte // body whose MD5 goes in body_md5; nil means body
	noSig     bool
	signPath  string // path the signature covers; "" means path
}

func newRaw(path string, body []byte) raw {
	return raw{method: http.MethodPost, path: path, body: body, key: key, secret: secret, timestamp: time.Now().Unix(), version: "1.0"}
}

func (r raw) url(host string) string {
	md5Of := r.md5Body
	if md5Of == nil {
		md5Of = r.body
	}
	sum := md5.Sum(md5Of)
	params := map[string]string{
		"auth_key":       r.key,
		"auth_timestamp": strconv.FormatInt(r.timestamp, 10),
		"auth_version":   r.version,
		"body_md5":       hex.EncodeToString(sum[:]),
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	pairs := make([]string, len(keys))
	for i, k := range keys {
		pairs[i] = k + "=" + params[k]
	}
	query := strings.Join(pairs, "&")
	mac := hmac.New(sha256.New, []byte(r.secret))
	signPath := r.path
	if r.signPath != "" {
		signPath = r.signPath
	}
	mac.Write([]byte(r.method + "\n" + signPath + "\n" + query))
	if !r.noSig {
		query += "&auth_signature=" + hex.EncodeToString(mac.Sum(nil))
	}
	return "http://" + host + r.path + "?" + query
}

func (r raw) do(t *testing.T, s *fakepusher.Server) (int, string) {
	t.Helper()
	req, err := http.NewRequest(r.method, r.url(s.Host()), bytes.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("raw request: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func channelsN(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("ch-%d", i)
	}
	return out
}

type ev struct{ Channel, Name, Data, SocketID string }

func strip(es []fakepusher.Event) []ev {
	out := make([]ev, len(es))
	for i, e := range es {
		out[i] = ev{e.Channel, e.Name, e.Data, e.SocketID}
	}
	return out
}

func equalEvents(a, b []ev) bool {
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

func TestClient(t *testing.T) {
	sid := "123.456"
	batchOf := func(n int) []pusher.Event {
		b := make([]pusher.Event, n)
		for i := range b {
			b[i] = pusher.Event{Channel: fmt.Sprintf("private-room-%d", i), Name: "new-message", Data: fmt.Sprintf(`{"seq":%d}`, i+1)}
		}
		return b
	}
	want10 := make([]ev, 10)
	for i := range want10 {
		want10[i] = ev{Channel: fmt.Sprintf("private-room-%d", i), Name: "new-message", Data: fmt.Sprintf(`{"seq":%d}`, i+1)}
	}

	tests := []struct {
		name       string
		secret     string // overrides the client's secret when set
		run        func(c *pusher.Client) error
		wantErr    string // substring of the error; "" means success
		wantEvents []ev
		wantStatus int
	}{
		{
			name: "trigger to 1 channel",
			run: func(c *pusher.Client) error {
				return c.Trigger("private-room-1", "new-message", `{"content":"<b>hi</b>"}`)
			},
			wantEvents: []ev{{"private-room-1", "new-message", `{"content":"<b>hi</b>"}`, ""}},
			wantStatus: 200,
		},
		{
			name: "trigger to 3 channels",
			run: func(c *pusher.Client) error {
				return c.TriggerMulti([]string{"a", "b", "c"}, "notification", map[string]string{"id": "n1"})
			},
			wantEvents: []ev{{"a", "notification", `{"id":"n1"}`, ""}, {"b", "notification", `{"id":"n1"}`, ""}, {"c", "notification", `{"id":"n1"}`, ""}},
			wantStatus: 200,
		},
		{
			name: "trigger with socket_id",
			run: func(c *pusher.Client) error {
				_, err := c.TriggerWithParams("x", "e", "d", pusher.TriggerParams{SocketID: &sid})
				return err
			},
			wantEvents: []ev{{"x", "e", "d", sid}},
			wantStatus: 200,
		},
		{
			name: "trigger to 100 channels",
			run: func(c *pusher.Client) error {
				return c.TriggerMulti(channelsN(100), "e", "d")
			},
			wantEvents: func() []ev {
				out := make([]ev, 100)
				for i, ch := range channelsN(100) {
					out[i] = ev{ch, "e", "d", ""}
				}
				return out
			}(),
			wantStatus: 200,
		},
		{
			name: "batch of 10 accepted",
			run: func(c *pusher.Client) error {
				res, err := c.TriggerBatch(batchOf(10))
				if err == nil && res == nil {
					return errors.New("nil result without error")
				}
				return err
			},
			wantEvents: want10,
			wantStatus: 200,
		},
		{
			name: "batch with info accepted",
			run: func(c *pusher.Client) error {
				info := "subscription_count"
				res, err := c.TriggerBatch([]pusher.Event{{Channel: "a", Name: "e", Data: "1", Info: &info}, {Channel: "b", Name: "e", Data: "2"}})
				if err != nil {
					return err
				}
				if len(res.Batch) != 2 {
					return fmt.Errorf("got %d batch items, want 2", len(res.Batch))
				}
				return nil
			},
			wantEvents: []ev{{"a", "e", "1", ""}, {"b", "e", "2", ""}},
			wantStatus: 200,
		},
		{
			name: "batch of 11 rejected",
			run: func(c *pusher.Client) error {
				_, err := c.TriggerBatch(batchOf(11))
				return err
			},
			wantErr:    "Status Code: 400",
			wantStatus: 400,
		},
		{
			name:       "wrong secret",
			secret:     "not-the-secret",
			run:        func(c *pusher.Client) error { return c.Trigger("a", "e", "d") },
			wantErr:    "Status Code: 401",
			wantStatus: 401,
		},
		{
			name:       "event name of 201 characters (not checked by the client)",
			run:        func(c *pusher.Client) error { return c.Trigger("a", strings.Repeat("e", 201), "d") },
			wantErr:    "Status Code: 400",
			wantStatus: 400,
		},
		{
			name:       "channel of 165 characters (the client allows 200)",
			run:        func(c *pusher.Client) error { return c.Trigger(strings.Repeat("c", 165), "e", "d") },
			wantErr:    "Status Code: 400",
			wantStatus: 400,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t)
			c := newClient(s)
			if tc.secret != "" {
				c.Secret = tc.secret
			}
			err := tc.run(c)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
			}
			if got := strip(s.Events()); !equalEvents(got, tc.wantEvents) {
				t.Errorf("events = %+v, want %+v", got, tc.wantEvents)
			}
			calls := s.Calls()
			if len(calls) != 1 || calls[0].Status != tc.wantStatus || calls[0].Seq != 1 {
				t.Fatalf("calls = %+v, want one with status %d", calls, tc.wantStatus)
			}
			if calls[0].Events != len(tc.wantEvents) {
				t.Errorf("call.Events = %d, want %d", calls[0].Events, len(tc.wantEvents))
			}
			for _, e := range s.Events() {
				if e.Call != 1 || e.ReceivedAt.IsZero() {
					t.Errorf("event %+v: want Call 1 and ReceivedAt set", e)
				}
			}
		})
	}
}

func TestRawRequests(t *testing.T) {
	eventsPath := "/apps/" + appID + "/events"
	batchPath := "/apps/" + appID + "/batch_events"
	trigger := func(t *testing.T, fields map[string]any) []byte {
		base := map[string]any{"name": "e", "data": "d", "channels": []string{"a"}}
		for k, v := range fields {
			if v == nil {
				delete(base, k)
			} else {
				base[k] = v
			}
		}
		return mustJSON(t, base)
	}
	batch := func(t *testing.T, n int) []byte {
		items := make([]map[string]string, n)
		for i := range items {
			items[i] = map[string]string{"channel": "a", "name": "e", "data": "d"}
		}
		return mustJSON(t, map[string]any{"batch": items})
	}

	tests := []struct {
		name       string
		req        func(t *testing.T) raw
		wantStatus int
		wantEvents int
		wantBody   string // substring of the response body
	}{
		{"well-formed trigger", func(t *testing.T) raw { return newRaw(eventsPath, trigger(t, nil)) }, 200, 1, "{}"},
		{"single channel field", func(t *testing.T) raw {
			return newRaw(eventsPath, trigger(t, map[string]any{"channels": nil, "channel": "solo"}))
		}, 200, 1, "{}"},
		{"data of 10240 bytes", func(t *testing.T) raw {
			return newRaw(eventsPath, trigger(t, map[string]any{"data": strings.Repeat("x", 10240)}))
		}, 200, 1, ""},
		{"data of 10241 bytes", func(t *testing.T) raw {
			return newRaw(eventsPath, trigger(t, map[string]any{"data": strings.Repeat("x", 10241)}))
		}, 413, 0, "too large"},
		{"batch event data of 10241 bytes", func(t *testing.T) raw {
			return newRaw(batchPath, mustJSON(t, map[string]any{"batch": []map[string]string{{"channel": "a", "name": "e", "data": strings.Repeat("x", 10241)}}}))
		}, 413, 0, "too large"},
		{"wrong secret", func(t *testing.T) raw { r := newRaw(eventsPath, trigger(t, nil)); r.secret = "nope"; return r }, 401, 0, "Invalid signature"},
		{"wrong key", func(t *testing.T) raw { r := newRaw(eventsPath, trigger(t, nil)); r.key = "other"; return r }, 401, 0, "auth_key"},
		{"missing signature", func(t *testing.T) raw { r := newRaw(eventsPath, trigger(t, nil)); r.noSig = true; return r }, 401, 0, "auth_signature"},
		{"wrong auth_version", func(t *testing.T) raw { r := newRaw(eventsPath, trigger(t, nil)); r.version = "2.0"; return r }, 401, 0, "auth_version"},
		{"stale timestamp", func(t *testing.T) raw {
			r := newRaw(eventsPath, trigger(t, nil))
			r.timestamp = time.Now().Unix() - 601
			return r
		}, 401, 0, "Timestamp expired"},
		{"future timestamp", func(t *testing.T) raw {
			r := newRaw(eventsPath, trigger(t, nil))
			r.timestamp = time.Now().Unix() + 601
			return r
		}, 401, 0, "Timestamp expired"},
		{"timestamp 590 s old", func(t *testing.T) raw {
			r := newRaw(eventsPath, trigger(t, nil))
			r.timestamp = time.Now().Unix() - 590
			return r
		}, 200, 1, ""},
		{"tampered body", func(t *testing.T) raw {
			r := newRaw(eventsPath, trigger(t, map[string]any{"data": "tampered"}))
			r.md5Body = trigger(t, nil) // signed for the original body
			return r
		}, 401, 0, "body_md5"},
		{"channel of 164 characters", func(t *testing.T) raw {
			return newRaw(eventsPath, trigger(t, map[string]any{"channels": []string{strings.Repeat("c", 164)}}))
		}, 200, 1, ""},
		{"channel of 165 characters", func(t *testing.T) raw {
			return newRaw(eventsPath, trigger(t, map[string]any{"channels": []string{strings.Repeat("c", 165)}}))
		}, 400, 0, "too long"},
		{"channel with a space", func(t *testing.T) raw {
			return newRaw(eventsPath, trigger(t, map[string]any{"channels": []string{"a b"}}))
		}, 400, 0, "Invalid channel name"},
		{"101 channels", func(t *testing.T) raw {
			return newRaw(eventsPath, trigger(t, map[string]any{"channels": channelsN(101)}))
		}, 400, 0, "Too many channels"},
		{"no channels", func(t *testing.T) raw {
			return newRaw(eventsPath, trigger(t, map[string]any{"channels": []string{}}))
		}, 400, 0, "channels"},
		{"both channel and channels", func(t *testing.T) raw {
			return newRaw(eventsPath, trigger(t, map[string]any{"channel": "b"}))
		}, 400, 0, "not both"},
		{"event name of 200 characters", func(t *testing.T) raw {
			return newRaw(eventsPath, trigger(t, map[string]any{"name": strings.Repeat("n", 200)}))
		}, 200, 1, ""},
		{"missing name", func(t *testing.T) raw { return newRaw(eventsPath, trigger(t, map[string]any{"name": nil})) }, 400, 0, "name"},
		{"missing data", func(t *testing.T) raw { return newRaw(eventsPath, trigger(t, map[string]any{"data": nil})) }, 400, 0, "data"},
		{"data not a string", func(t *testing.T) raw {
			return newRaw(eventsPath, trigger(t, map[string]any{"data": map[string]int{"a": 1}}))
		}, 400, 0, "Invalid JSON"},
		{"malformed JSON", func(t *testing.T) raw { return newRaw(eventsPath, []byte(`{"name":`)) }, 400, 0, "Invalid JSON"},
		{"invalid socket_id", func(t *testing.T) raw {
			return newRaw(eventsPath, trigger(t, map[string]any{"socket_id": "abc"}))
		}, 400, 0, "socket_id"},
		{"socket_id with trailing newline", func(t *testing.T) raw {
			return newRaw(eventsPath, trigger(t, map[string]any{"socket_id": "1.2\n"}))
		}, 400, 0, "socket_id"},
		{"valid socket_id", func(t *testing.T) raw {
			return newRaw(eventsPath, trigger(t, map[string]any{"socket_id": "1234.5678"}))
		}, 200, 1, ""},
		{"batch of 1", func(t *testing.T) raw { return newRaw(batchPath, batch(t, 1)) }, 200, 1, "{}"},
		{"batch of 11", func(t *testing.T) raw { return newRaw(batchPath, batch(t, 11)) }, 400, 0, "Batch too large"},
		{"empty batch", func(t *testing.T) raw { return newRaw(batchPath, batch(t, 0)) }, 400, 0, "at least 1"},
		{"batch missing", func(t *testing.T) raw { return newRaw(batchPath, []byte(`{}`)) }, 400, 0, "batch"},
		{"wrong app id", func(t *testing.T) raw { return newRaw("/apps/999/events", trigger(t, nil)) }, 404, 0, ""},
		{"unknown endpoint", func(t *testing.T) raw { return newRaw("/apps/"+appID+"/channels", trigger(t, nil)) }, 404, 0, ""},
		{"GET on events", func(t *testing.T) raw { r := newRaw(eventsPath, nil); r.method = http.MethodGet; return r }, 404, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t)
			status, body := tc.req(t).do(t, s)
			if status != tc.wantStatus {
				t.Fatalf("status = %d (%q), want %d", status, body, tc.wantStatus)
			}
			if !strings.Contains(body, tc.wantBody) {
				t.Errorf("body = %q, want it to contain %q", body, tc.wantBody)
			}
			if got := len(s.Events()); got != tc.wantEvents {
				t.Errorf("recorded %d events, want %d", got, tc.wantEvents)
			}
			if calls := s.Calls(); len(calls) != 1 || calls[0].Status != tc.wantStatus {
				t.Errorf("calls = %+v, want one with status %d", calls, tc.wantStatus)
			}
		})
	}
}

func callStatuses(s *fakepusher.Server) []int {
	var out []int
	for _, c := range s.Calls() {
		out = append(out, c.Status)
	}
	return out
}

func equalInts(a, b []int) bool {
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

func TestFaults(t *testing.T) {
	tests := []struct {
		name         string
		run          func(t *testing.T, s *fakepusher.Server, c *pusher.Client)
		wantStatuses []int
		wantEvents   []ev
	}{
		{
			name: "FailNext(2, 503) then success",
			run: func(t *testing.T, s *fakepusher.Server, c *pusher.Client) {
				s.FailNext(2, 503)
				for i := range 2 {
					if err := c.Trigger("a", "e", strconv.Itoa(i)); err == nil || !strings.Contains(err.Error(), "Status Code: 503") {
						t.Errorf("call %d: error = %v, want 503", i+1, err)
					}
				}
				if err := c.Trigger("a", "e", "2"); err != nil {
					t.Errorf("third call: %v", err)
				}
			},
			wantStatuses: []int{503, 503, 200},
			wantEvents:   []ev{{"a", "e", "2", ""}},
		},
		{
			name: "FailNext does not count unauthenticated calls",
			run: func(t *testing.T, s *fakepusher.Server, c *pusher.Client) {
				s.FailNext(1, 500)
				bad := *c
				bad.Secret = "wrong"
				if err := bad.Trigger("a", "e", "x"); err == nil || !strings.Contains(err.Error(), "401") {
					t.Errorf("error = %v, want 401", err)
				}
				if err := c.Trigger("a", "e", "y"); err == nil || !strings.Contains(err.Error(), "500") {
					t.Errorf("error = %v, want 500", err)
				}
				if err := c.Trigger("a", "e", "z"); err != nil {
					t.Error(err)
				}
			},
			wantStatuses: []int{401, 500, 200},
			wantEvents:   []ev{{"a", "e", "z", ""}},
		},
		{
			name: "SetDown",
			run: func(t *testing.T, s *fakepusher.Server, c *pusher.Client) {
				s.SetDown(true)
				err := c.Trigger("a", "e", "lost")
				if err == nil || !strings.Contains(err.Error(), "Status Code: 503 - service unavailable") {
					t.Errorf("error = %v, want 503 service unavailable", err)
				}
				if _, err := c.TriggerBatch([]pusher.Event{{Channel: "a", Name: "e", Data: "lost"}}); err == nil {
					t.Error("batch while down: want error")
				}
				s.SetDown(false)
				if err := c.Trigger("a", "e", "ok"); err != nil {
					t.Error(err)
				}
			},
			wantStatuses: []int{503, 503, 200},
			wantEvents:   []ev{{"a", "e", "ok", ""}},
		},
		{
			name: "RejectWhen 413 for one event of a batch rejects the whole call",
			run: func(t *testing.T, s *fakepusher.Server, c *pusher.Client) {
				s.RejectWhen(func(e fakepusher.Event) int {
					if e.Name == "bad" {
						return 413
					}
					return 0
				})
				_, err := c.TriggerBatch([]pusher.Event{
					{Channel: "a", Name: "good", Data: "1"},
					{Channel: "b", Name: "bad", Data: "2"},
					{Channel: "c", Name: "good", Data: "3"},
				})
				if err == nil || !strings.Contains(err.Error(), "Status Code: 413") {
					t.Errorf("error = %v, want 413", err)
				}
				if _, err := c.TriggerBatch([]pusher.Event{{Channel: "a", Name: "good", Data: "4"}}); err != nil {
					t.Error(err)
				}
				s.RejectWhen(nil)
				if err := c.Trigger("b", "bad", "5"); err != nil {
					t.Error(err)
				}
			},
			wantStatuses: []int{413, 200, 200},
			wantEvents:   []ev{{"a", "good", "4", ""}, {"b", "bad", "5", ""}},
		},
		{
			name: "RejectWhen sees each channel of a multi-channel trigger",
			run: func(t *testing.T, s *fakepusher.Server, c *pusher.Client) {
				s.RejectWhen(func(e fakepusher.Event) int {
					if e.Channel == "c" {
						return 429
					}
					return 0
				})
				if err := c.TriggerMulti([]string{"a", "b", "c"}, "e", "d"); err == nil || !strings.Contains(err.Error(), "429") {
					t.Errorf("error = %v, want 429", err)
				}
			},
			wantStatuses: []int{429},
		},
		{
			name: "SetLatency delays every call",
			run: func(t *testing.T, s *fakepusher.Server, c *pusher.Client) {
				const latency = 50 * time.Millisecond
				s.SetLatency(latency)
				began := time.Now()
				if err := c.Trigger("a", "e", "slow"); err != nil {
					t.Fatal(err)
				}
				if elapsed := time.Since(began); elapsed < latency {
					t.Errorf("accepted call took %v, want >= %v", elapsed, latency)
				}
				began = time.Now()
				bad := *c
				bad.Secret = "wrong"
				_ = bad.Trigger("a", "e", "rejected")
				if elapsed := time.Since(began); elapsed < latency {
					t.Errorf("rejected call took %v, want >= %v", elapsed, latency)
				}
			},
			wantStatuses: []int{200, 401},
			wantEvents:   []ev{{"a", "e", "slow", ""}},
		},
		{
			name: "caller giving up during latency records nothing",
			run: func(t *testing.T, s *fakepusher.Server, c *pusher.Client) {
				s.SetLatency(2 * time.Second)
				impatient := *c
				impatient.HTTPClient = &http.Client{Timeout: 30 * time.Millisecond}
				if err := impatient.Trigger("a", "e", "gone"); err == nil {
					t.Fatal("want a timeout error")
				}
				// The server notices the closed connection asynchronously.
				deadline := time.Now().Add(5 * time.Second)
				for len(s.Calls()) == 0 && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
			},
			wantStatuses: []int{499},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t)
			tc.run(t, s, newClient(s))
			if got := callStatuses(s); !equalInts(got, tc.wantStatuses) {
				t.Errorf("call statuses = %v, want %v", got, tc.wantStatuses)
			}
			if got := strip(s.Events()); !equalEvents(got, tc.wantEvents) {
				t.Errorf("events = %+v, want %+v", got, tc.wantEvents)
			}
		})
	}
}

func TestWaitForEvents(t *testing.T) {
	s := start(t)
	c := newClient(s)

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- s.WaitForEvents(ctx, 4)
	}()
	if err := c.Trigger("a", "e", "1"); err != nil {
		t.Fatal(err)
	}
	if err := c.TriggerMulti([]string{"a", "b", "c"}, "e", "2"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("WaitForEvents: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := s.WaitForEvents(ctx, 5); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitForEvents for a 5th event = %v, want deadline exceeded", err)
	}

	closed := make(chan error, 1)
	go func() { closed <- s.WaitForEvents(context.Background(), 100) }()
	_ = s.Close()
	select {
	case err := <-closed:
		if err == nil {
			t.Error("WaitForEvents after Close: want error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitForEvents did not return after Close")
	}
}

func TestEventsOnResetAndSequence(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	s := start(t, func(c *fakepusher.Config) {
		c.OnEvent = func(e fakepusher.Event) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, e.Channel+":"+e.Data)
		}
	})
	c := newClient(s)
	if err := c.Trigger("a", "e", "1"); err != nil {
		t.Fatal(err)
	}
	if err := c.TriggerMulti([]string{"a", "b"}, "e", "2"); err != nil {
		t.Fatal(err)
	}
	if got := strip(s.EventsOn("a")); !equalEvents(got, []ev{{"a", "e", "1", ""}, {"a", "e", "2", ""}}) {
		t.Errorf("EventsOn(a) = %+v", got)
	}
	evs := s.Events()
	if evs[0].Call != 1 || evs[1].Call != 2 || evs[2].Call != 2 {
		t.Errorf("event call numbers = %d %d %d, want 1 2 2", evs[0].Call, evs[1].Call, evs[2].Call)
	}
	calls := s.Calls()
	if calls[1].Seq != 2 || calls[1].Events != 2 || calls[1].Channels != 2 || calls[1].Path != "/apps/"+appID+"/events" {
		t.Errorf("second call = %+v", calls[1])
	}
	mu.Lock()
	if strings.Join(seen, ",") != "a:1,a:2,b:2" {
		t.Errorf("OnEvent saw %v", seen)
	}
	mu.Unlock()

	s.Reset()
	if len(s.Events()) != 0 || len(s.Calls()) != 0 {
		t.Fatal("Reset kept records")
	}
	if err := c.Trigger("z", "e", "3"); err != nil {
		t.Fatal(err)
	}
	if evs := s.Events(); len(evs) != 1 || evs[0].Call != 1 {
		t.Errorf("after Reset events = %+v, want one from call 1", evs)
	}
}

func TestConcurrentTriggers(t *testing.T) {
	s := start(t)
	c := newClient(s)
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			if i%8 == 0 {
				s.SetLatency(time.Millisecond)
				_ = s.Calls()
			}
			errs <- c.Trigger(fmt.Sprintf("room-%d", i), "e", strconv.Itoa(i))
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitForEvents(ctx, n); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	seqs := map[int64]bool{}
	for _, c := range s.Calls() {
		seqs[c.Seq] = true
	}
	if len(seqs) != n {
		t.Errorf("%d distinct call numbers, want %d", len(seqs), n)
	}
}

func TestStartValidatesConfig(t *testing.T) {
	if _, err := fakepusher.Start(fakepusher.Config{AppID: appID, Key: key}); err == nil {
		t.Error("Start without a secret: want error")
	}
}

// Host is dialable (never an unspecified address) and URL is built from it.
func TestHostAndURL(t *testing.T) {
	s := start(t)
	if !strings.HasPrefix(s.Host(), "127.0.0.1:") || s.URL() != "http://"+s.Host() {
		t.Fatalf("Host = %q, URL = %q", s.Host(), s.URL())
	}
	if _, err := url.Parse(s.URL()); err != nil {
		t.Fatal(err)
	}
}
