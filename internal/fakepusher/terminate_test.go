package fakepusher_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/internal/fakepusher"
)

func terminatePath(user string) string {
	return "/apps/" + appID + "/users/" + user + "/terminate_connections"
}

func TestTerminateRecordsTheUserOfASignedCall(t *testing.T) {
	s := start(t)
	status, body := newRaw(terminatePath("u-7"), []byte(`{}`)).do(t, s)
	if status != http.StatusOK || body != "{}" {
		t.Fatalf("terminate: %d %q, want 200 {}", status, body)
	}
	if got := s.TerminatedUsers(); len(got) != 1 || got[0] != "u-7" {
		t.Errorf("terminated users = %q, want [u-7]", got)
	}
	if ts := s.Terminations(); len(ts) != 1 || ts[0].Call != 1 || ts[0].ReceivedAt.IsZero() {
		t.Errorf("terminations = %+v, want one, of call 1", ts)
	}
	if n := len(s.Events()); n != 0 {
		t.Errorf("%d events recorded, want none: a terminate call is no event", n)
	}
	if calls := s.Calls(); len(calls) != 1 || calls[0].Path != terminatePath("u-7") || calls[0].Status != 200 || calls[0].Events != 0 {
		t.Errorf("calls = %+v, want one 200 on the terminate path carrying no event", calls)
	}
	s.Reset()
	if got := s.TerminatedUsers(); len(got) != 0 {
		t.Errorf("after Reset: terminated users = %q, want none", got)
	}
}

func TestTerminateRefusesCallsNotSignedForIt(t *testing.T) {
	path := terminatePath("u-7")
	tests := []struct {
		name     string
		req      func() raw
		wantBody string
	}{
		{"wrong secret", func() raw { r := newRaw(path, []byte(`{}`)); r.secret = "nope"; return r }, "Invalid signature"},
		{"wrong key", func() raw { r := newRaw(path, []byte(`{}`)); r.key = "other"; return r }, "auth_key"},
		{"no signature", func() raw { r := newRaw(path, []byte(`{}`)); r.noSig = true; return r }, "auth_signature"},
		{"signed for another user", func() raw { r := newRaw(path, []byte(`{}`)); r.signPath = terminatePath("u-8"); return r }, "Invalid signature"},
		{"signed for the events endpoint", func() raw {
			r := newRaw(path, []byte(`{}`))
			r.signPath = "/apps/" + appID + "/events"
			return r
		}, "Invalid signature"},
		{"body MD5 of another body", func() raw { r := newRaw(path, []byte(`{}`)); r.md5Body = []byte(`{"a":1}`); return r }, "body_md5"},
		{"stale timestamp", func() raw {
			r := newRaw(path, []byte(`{}`))
			r.timestamp = time.Now().Add(-11 * time.Minute).Unix()
			return r
		}, "Timestamp expired"},
		{"another auth version", func() raw { r := newRaw(path, []byte(`{}`)); r.version = "2.0"; return r }, "auth_version"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t)
			s.FailNext(1, 503) // counts authenticated calls only: must stay unused
			status, body := tc.req().do(t, s)
			if status != http.StatusUnauthorized || !strings.Contains(body, tc.wantBody) {
				t.Errorf("answer = %d %q, want 401 mentioning %q", status, body, tc.wantBody)
			}
			if got := s.TerminatedUsers(); len(got) != 0 {
				t.Errorf("terminated users = %q, want none", got)
			}
		})
	}
}

func TestTerminateRoutesAndBodies(t *testing.T) {
	tests := []struct {
		name       string
		req        raw
		wantStatus int
		wantBody   string
	}{
		{"another app", newRaw("/apps/999/users/u-7/terminate_connections", []byte(`{}`)), 404, "NOT FOUND"},
		{"no user", newRaw("/apps/"+appID+"/users//terminate_connections", []byte(`{}`)), 404, "NOT FOUND"},
		{"another action", newRaw("/apps/"+appID+"/users/u-7/connections", []byte(`{}`)), 404, "NOT FOUND"},
		{"a nested path", newRaw("/apps/"+appID+"/users/a/b/terminate_connections", []byte(`{}`)), 404, "NOT FOUND"},
		{"GET", func() raw { r := newRaw(terminatePath("u-7"), nil); r.method = http.MethodGet; return r }(), 404, "NOT FOUND"},
		{"empty body", newRaw(terminatePath("u-7"), nil), 400, "empty"},
		{"an array body", newRaw(terminatePath("u-7"), []byte(`[]`)), 400, "Invalid JSON"},
		{"a null body", newRaw(terminatePath("u-7"), []byte(`null`)), 400, "object"},
		{"a user id of 200 bytes", newRaw(terminatePath(strings.Repeat("u", 200)), []byte(`{}`)), 400, "too long"},
		{"a user id of 199 bytes", newRaw(terminatePath(strings.Repeat("u", 199)), []byte(`{}`)), 200, "{}"},
		{"fields in the body", newRaw(terminatePath("u-7"), []byte(`{"reason":"left"}`)), 200, "{}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t)
			status, body := tc.req.do(t, s)
			if status != tc.wantStatus || !strings.Contains(body, tc.wantBody) {
				t.Errorf("answer = %d %q, want %d mentioning %q", status, body, tc.wantStatus, tc.wantBody)
			}
			want := 0
			if tc.wantStatus == http.StatusOK {
				want = 1
			}
			if len(s.TerminatedUsers()) != want {
				t.Errorf("terminated users = %q, want %d", s.TerminatedUsers(), want)
			}
		})
	}
}

func TestTerminateMeetsTheInjectedFaults(t *testing.T) {
	terminate := func(t *testing.T, s *fakepusher.Server, user string) int {
		status, _ := newRaw(terminatePath(user), []byte(`{}`)).do(t, s)
		return status
	}
	s := start(t)
	s.FailNext(1, 503)
	s.SetLatency(20 * time.Millisecond)
	began := time.Now()
	got := []int{terminate(t, s, "u-1"), terminate(t, s, "u-1")}
	if elapsed := time.Since(began); elapsed < 40*time.Millisecond {
		t.Errorf("two calls took %v, want the injected latency each", elapsed)
	}
	s.SetLatency(0)
	s.SetDown(true)
	got = append(got, terminate(t, s, "u-2"))
	s.SetDown(false)
	s.RejectTerminationWhen(func(user string) int {
		if user == "u-3" {
			return 400
		}
		return 0
	})
	got = append(got, terminate(t, s, "u-3"), terminate(t, s, "u-4"))
	s.RejectTerminationWhen(nil)
	got = append(got, terminate(t, s, "u-3"))
	if want := []int{503, 200, 503, 400, 200, 200}; !equalInts(got, want) {
		t.Errorf("statuses = %v, want %v", got, want)
	}
	if users := s.TerminatedUsers(); strings.Join(users, ",") != "u-1,u-4,u-3" {
		t.Errorf("terminated users = %q, want u-1 once (after its 503), then u-4, then u-3", users)
	}
}

func TestWaitForTerminations(t *testing.T) {
	s := start(t)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- s.WaitForTerminations(ctx, 2)
	}()
	for _, u := range []string{"a", "b"} {
		if status, body := newRaw(terminatePath(u), []byte(`{}`)).do(t, s); status != 200 {
			t.Fatalf("terminate %s: %d %s", u, status, body)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := s.WaitForTerminations(ctx, 3); err == nil {
		t.Error("waiting for a third termination: want ctx's error")
	}
}
