package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/testsupport"
	"github.com/roomcast/roomcast/projections"
)

const apiTestSecret = "the-api-test-secret-of-32-bytes-or-more"

func apiToken(t *testing.T, user string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": user, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix(),
	}).SignedString([]byte(apiTestSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestAPICommandServesAndStops: `roomcast api` on a migrated database
// authorizes a member's channel, refuses a non-member and a request
// without a token, serves health, readiness and metrics on API_ADDR, and
// stops cleanly when its context ends, without logging a secret.
func TestAPICommandServesAndStops(t *testing.T) {
	t.Parallel()
	db, dbURL := testsupport.Database(t, 2)
	env := map[string]string{
		"DATABASE_URL": dbURL, "PUSHER_KEY": "app-key", "PUSHER_SECRET": "app-secret-not-in-logs",
		"API_ADDR": freeAddr(t), "API_JWT_SECRET": apiTestSecret, "LOG_LEVEL": "debug",
	}
	p := projections.NewProjector(db, nil, prometheus.NewRegistry())
	if _, err := p.ProjectBatch(t.Context(), []projections.Item{{Env: chattest.MemberJoined("room-1", "u-1").Envelope(t), Origin: projections.Origin{Partition: -1}}}); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr testsupport.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"api"}, envOf(env), nil, &stdout, &stderr) }()
	base := "http://" + env["API_ADDR"]
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("roomcast api returned %v before serving:\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("roomcast api did not answer /healthz within 30s:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	call := func(method, path, user, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if user != "" {
			req.Header.Set("Authorization", "Bearer "+apiToken(t, user))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	form := url.Values{"socket_id": {"1.2"}, "channel_name": {"private-room-room-1"}}.Encode()
	for _, tc := range []struct {
		method, path, user, body string
		status                   int
		has                      string
	}{
		{"GET", "/readyz", "", "", 200, "ready"},
		{"POST", "/pusher/auth", "u-1", form, 200, `"auth":"app-key:`},
		{"POST", "/pusher/auth", "u-2", form, 403, `"error"`},
		{"POST", "/pusher/auth", "", form, 401, `"error"`},
		{"GET", "/metrics", "", "", 200, `roomcast_api_requests_total{route="POST /pusher/auth",status="200"} 1`},
	} {
		if status, body := call(tc.method, tc.path, tc.user, tc.body); status != tc.status || !strings.Contains(body, tc.has) {
			t.Errorf("%s %s as %q: %d %s, want %d with %s", tc.method, tc.path, tc.user, status, body, tc.status, tc.has)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("roomcast api returned %v after its context ended", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("roomcast api did not stop within 30s of its context ending")
	}
	logs := stderr.String()
	for _, secret := range []string{"app-secret-not-in-logs", apiTestSecret} {
		if strings.Contains(logs, secret) {
			t.Errorf("the logs hold the secret %q:\n%s", secret, logs)
		}
	}
	if !strings.Contains(logs, "roomcast api stopped") {
		t.Errorf("no clean stop in the logs:\n%s", logs)
	}
}

// TestAPICommandConfigErrorsNameTheSettings: with nothing configured, the
// error names every setting `roomcast api` needs; a bad secret is named,
// never shown.
func TestAPICommandConfigErrorsNameTheSettings(t *testing.T) {
	t.Parallel()
	_, _, err := runQuick(t, 10*time.Second, []string{"api"}, envOf(nil), nil)
	if err == nil {
		t.Fatal("api with an empty environment succeeded")
	}
	for _, name := range []string{"DATABASE_URL", "API_JWKS_URL, API_JWT_SECRET or API_TRUSTED_USER_HEADER", "PUSHER_KEY", "PUSHER_SECRET"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s:\n%v", name, err)
		}
	}
	_, _, err = runQuick(t, 10*time.Second, []string{"api"}, envOf(map[string]string{
		"DATABASE_URL": "postgres://localhost/x", "PUSHER_KEY": "k", "PUSHER_SECRET": "s", "API_JWT_SECRET": "short-secret-value",
	}), nil)
	if err == nil || !strings.Contains(err.Error(), "API_JWT_SECRET") || strings.Contains(err.Error(), "short-secret-value") {
		t.Errorf("short API_JWT_SECRET: %v; want an error naming the setting without its value", err)
	}
}

// TestAPICommandUsage: `roomcast api -h` prints its usage; an argument is
// a usage error; an unmigrated database is refused with what to do.
func TestAPICommandUsage(t *testing.T) {
	t.Parallel()
	out, _, err := runQuick(t, 10*time.Second, []string{"api", "-h"}, envOf(nil), nil)
	if err != nil || !strings.Contains(out, "roomcast api ") || !strings.Contains(out, "API_ADDR") {
		t.Errorf("api -h: %v, %q; want its usage line", err, out)
	}
	if _, _, err := runQuick(t, 10*time.Second, []string{"api", "now"}, envOf(nil), nil); !errors.Is(err, errUsage) {
		t.Errorf("api now: %v, want a usage error", err)
	}
	out, _, _ = runQuick(t, 10*time.Second, []string{"help"}, envOf(nil), nil)
	if !strings.Contains(out, "roomcast api ") {
		t.Errorf("help does not list roomcast api:\n%s", out)
	}
	_, _, err = runQuick(t, 30*time.Second, []string{"api"}, envOf(map[string]string{
		"DATABASE_URL": testsupport.Postgres(t), "PUSHER_KEY": "k", "PUSHER_SECRET": "s",
		"API_TRUSTED_USER_HEADER": "X-User-Id", "API_ADDR": freeAddr(t),
	}), nil)
	if err == nil || !strings.Contains(err.Error(), "roomcast migrate up") {
		t.Errorf("api on an empty database: %v; want an error that says to run `roomcast migrate up`", err)
	}
}
