package api_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/pusher/pusher-http-go/v5"

	"github.com/roomcast/roomcast/api"
	"github.com/roomcast/roomcast/internal/testsupport"
	"github.com/roomcast/roomcast/projections"
)

const appOrigin = "https://app.example.com"

// corsFixture is the API with API_CORS_ORIGINS set to origins, on a fresh
// database when withDB (the routes that read rooms need one).
func corsFixture(t *testing.T, withDB bool, identity api.Identity, origins ...string) *fixture {
	t.Helper()
	f := &fixture{pusher: &pusher.Client{AppID: "1", Key: pusherKey, Secret: pusherSecret}, registry: prometheus.NewRegistry()}
	if withDB {
		f.db, _ = testsupport.Database(t, 4)
		f.projector = projections.NewProjector(f.db, nil, prometheus.NewRegistry())
	}
	srv := api.New(api.Config{
		DB: f.db, Pusher: f.pusher, Registry: f.registry, Identity: identity, CORSOrigins: origins,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	f.server = httptest.NewServer(srv.Handler())
	t.Cleanup(f.server.Close)
	return f
}

func secretIdentity() api.Identity { return api.NewSecretIdentity(testSecret, api.JWTSettings{}) }

// request sends method path with headers (name, value pairs; a name given
// twice is sent twice) and a bearer token of user unless user is "".
func (f *fixture) request(t *testing.T, method, path, user string, headers ...string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, f.server.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+token(t, user))
	}
	return do(t, req)
}

var corsHeaders = []string{
	"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Access-Control-Allow-Methods",
	"Access-Control-Allow-Headers", "Access-Control-Max-Age", "Access-Control-Expose-Headers",
}

func wantNoCORSHeaders(t *testing.T, what string, a answer) {
	t.Helper()
	for _, h := range corsHeaders {
		if v := a.header.Values(h); len(v) > 0 {
			t.Errorf("%s: %s: %q, want none", what, h, v)
		}
	}
}

func wantHeader(t *testing.T, what string, a answer, name, want string) {
	t.Helper()
	if got := a.header.Values(name); len(got) != 1 || got[0] != want {
		t.Errorf("%s: %s: %q, want %q", what, name, got, want)
	}
}

// TestCORSAllowedOriginReadsTheAnswers: a page of a listed origin gets the
// CORS headers on every answer (a member's events, a refusal, a 401 whose
// WWW-Authenticate it may read), with its own origin echoed and
// credentials allowed, never "*".
func TestCORSAllowedOriginReadsTheAnswers(t *testing.T) {
	t.Parallel()
	f := corsFixture(t, true, secretIdentity(), "http://localhost:5173", appOrigin)
	f.project(t, member("room-1", "u-1", "Ada", nil))
	for _, c := range []struct {
		what, user string
		status     int
	}{
		{"a member's events", "u-1", http.StatusOK},
		{"a non-member's refusal", "u-2", http.StatusForbidden},
		{"no token", "", http.StatusUnauthorized},
	} {
		a := f.request(t, http.MethodGet, "/rooms/room-1/events", c.user, "Origin", appOrigin)
		if a.status != c.status {
			t.Errorf("%s: %d %s, want %d", c.what, a.status, a.body, c.status)
		}
		wantHeader(t, c.what, a, "Access-Control-Allow-Origin", appOrigin)
		wantHeader(t, c.what, a, "Access-Control-Allow-Credentials", "true")
		wantHeader(t, c.what, a, "Access-Control-Expose-Headers", "ETag, WWW-Authenticate")
		if !slices.Contains(a.header.Values("Vary"), "Origin") {
			t.Errorf("%s: Vary %q lacks Origin", c.what, a.header.Values("Vary"))
		}
	}
	a := f.request(t, http.MethodGet, "/healthz", "", "Origin", "http://localhost:5173")
	wantHeader(t, "the other listed origin", a, "Access-Control-Allow-Origin", "http://localhost:5173")
}

// TestCORSOtherOriginGetsNoCORSHeaders: an origin not listed, however
// close to one that is, gets the answer it would get without CORS (which a
// browser then keeps from its page), and its preflight is not answered.
func TestCORSOtherOriginGetsNoCORSHeaders(t *testing.T) {
	t.Parallel()
	f := corsFixture(t, false, secretIdentity(), appOrigin)
	for _, origin := range []string{
		"https://evil.example.com", "http://app.example.com", "https://app.example.com.evil.example",
		"https://APP.example.com", "https://app.example.com:443", "https://app.example.com/", "null", "",
	} {
		a := f.request(t, http.MethodGet, "/rooms/room-1/events", "", "Origin", origin)
		if a.status != http.StatusUnauthorized {
			t.Errorf("Origin %q: %d, want the 401 any request without a token gets", origin, a.status)
		}
		wantNoCORSHeaders(t, "Origin "+origin, a)
		if !slices.Contains(a.header.Values("Vary"), "Origin") {
			t.Errorf("Origin %q: Vary %q lacks Origin", origin, a.header.Values("Vary"))
		}
		p := f.request(t, http.MethodOptions, "/pusher/auth", "", "Origin", origin, "Access-Control-Request-Method", "POST")
		if p.status == http.StatusNoContent || p.status == http.StatusOK {
			t.Errorf("preflight of Origin %q: %d, want it not answered", origin, p.status)
		}
		wantNoCORSHeaders(t, "preflight of Origin "+origin, p)
	}
	// Two Origin headers: which one the browser meant is unknown.
	a := f.request(t, http.MethodGet, "/healthz", "", "Origin", appOrigin, "Origin", "https://evil.example.com")
	wantNoCORSHeaders(t, "two Origin headers", a)
}

// TestCORSPreflightNeedsNoIdentity: a browser sends a preflight without
// the Authorization header; a listed origin's is answered 204 with what
// the API allows, before identity is asked for (no 401, no refusal
// counted).
func TestCORSPreflightNeedsNoIdentity(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		what     string
		identity api.Identity
		headers  string
	}{
		{"bearer tokens", secretIdentity(), "Authorization, Content-Type, If-None-Match"},
		{"a gateway's header", api.HeaderIdentity{Header: "X-User-Id"}, "Authorization, Content-Type, If-None-Match, X-User-Id"},
	} {
		f := corsFixture(t, false, c.identity, appOrigin)
		for _, path := range []string{"/pusher/auth", "/pusher/user-auth", "/rooms/room-1/events", "/users/me/notifications"} {
			a := f.request(t, http.MethodOptions, path, "", "Origin", appOrigin,
				"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization,content-type")
			what := c.what + ": preflight of " + path
			if a.status != http.StatusNoContent || a.body != "" {
				t.Errorf("%s: %d %q, want 204 and no body", what, a.status, a.body)
			}
			wantHeader(t, what, a, "Access-Control-Allow-Origin", appOrigin)
			wantHeader(t, what, a, "Access-Control-Allow-Credentials", "true")
			wantHeader(t, what, a, "Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			wantHeader(t, what, a, "Access-Control-Allow-Headers", c.headers)
			wantHeader(t, what, a, "Access-Control-Max-Age", "600")
		}
		if m := f.request(t, http.MethodGet, "/metrics", "").body; strings.Contains(m, "roomcast_api_identity_refusals_total{") {
			t.Errorf("%s: a preflight was refused an identity:\n%s", c.what, grepMetric(m, "roomcast_api_identity_refusals_total"))
		}
	}
}

// TestCORSCredentialsOnlyForListedOrigins: credentials are allowed to the
// exact origin a browser sent, and only then; an OPTIONS request that is
// not a preflight goes to the routes like any other.
func TestCORSCredentialsOnlyForListedOrigins(t *testing.T) {
	t.Parallel()
	f := corsFixture(t, false, secretIdentity(), appOrigin)
	a := f.request(t, http.MethodGet, "/healthz", "", "Origin", appOrigin)
	wantHeader(t, "listed origin", a, "Access-Control-Allow-Credentials", "true")
	if got := a.header.Get("Access-Control-Allow-Origin"); got == "*" || got != appOrigin {
		t.Errorf("Access-Control-Allow-Origin %q, want the exact origin (credentials are not allowed with *)", got)
	}
	if a := f.request(t, http.MethodOptions, "/pusher/auth", "", "Origin", appOrigin); a.status == http.StatusNoContent {
		t.Errorf("OPTIONS without Access-Control-Request-Method answered as a preflight")
	}
	if a := f.request(t, http.MethodGet, "/healthz", ""); len(a.header.Values("Access-Control-Allow-Credentials")) > 0 {
		t.Errorf("a request without Origin got credentials allowed")
	}
}

// TestCORSOffWithoutOrigins: API_CORS_ORIGINS unset (the default) adds
// nothing to any answer, and a preflight is not answered.
func TestCORSOffWithoutOrigins(t *testing.T) {
	t.Parallel()
	f := corsFixture(t, false, secretIdentity())
	a := f.request(t, http.MethodGet, "/healthz", "", "Origin", appOrigin)
	wantNoCORSHeaders(t, "GET", a)
	if v := a.header.Values("Vary"); len(v) > 0 {
		t.Errorf("Vary %q, want none", v)
	}
	p := f.request(t, http.MethodOptions, "/pusher/auth", "", "Origin", appOrigin, "Access-Control-Request-Method", "POST")
	if p.status == http.StatusNoContent {
		t.Errorf("preflight answered 204 with CORS off")
	}
	wantNoCORSHeaders(t, "preflight", p)
}

func grepMetric(body, name string) string {
	var out []string
	for l := range strings.SplitSeq(body, "\n") {
		if strings.HasPrefix(l, name) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
