package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pusher/pusher-http-go/v5"

	"github.com/roomcast/roomcast/api"
	"github.com/roomcast/roomcast/internal/testsupport"
)

func get(t *testing.T, url string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, req)
}

// TestAPIHealthReadinessAndMetrics: /healthz and /readyz need no identity;
// /metrics counts requests by route and status; an unknown path is a JSON
// 404.
func TestAPIHealthReadinessAndMetrics(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if a := get(t, f.server.URL+"/healthz"); a.status != http.StatusOK {
		t.Errorf("/healthz: %d %s", a.status, a.body)
	}
	if a := get(t, f.server.URL+"/readyz"); a.status != http.StatusOK || a.body != "ready\n" {
		t.Errorf("/readyz: %d %q, want 200 ready", a.status, a.body)
	}
	if a := get(t, f.server.URL+"/no/such/thing"); a.status != http.StatusNotFound {
		t.Errorf("unknown path: %d %s, want 404", a.status, a.body)
	} else {
		errorReason(t, a)
	}
	f.authorize(t, "u-1", socket, "private-room-room-1") // 403: not a member
	f.authorize(t, "", socket, "private-room-room-1")    // 401
	m := get(t, f.server.URL+"/metrics").body
	for _, want := range []string{
		`roomcast_api_requests_total{route="POST /pusher/auth",status="403"} 1`,
		`roomcast_api_requests_total{route="POST /pusher/auth",status="401"} 1`,
		`roomcast_api_requests_total{route="GET /readyz",status="200"} 1`,
		`roomcast_api_requests_total{route="other",status="404"} 1`,
		`roomcast_api_request_duration_seconds_count{route="POST /pusher/auth",status="403"} 1`,
		`roomcast_api_identity_refusals_total{reason="missing"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestAPIReadinessSaysWhatIsMissing: a database that does not answer, or
// a key set not fetched yet, makes /readyz 503 with the reason.
func TestAPIReadinessSaysWhatIsMissing(t *testing.T) {
	t.Parallel()
	db, _ := testsupport.Database(t, 2)
	down := httptest.NewServer(http.NotFoundHandler()) // the provider answers 404
	t.Cleanup(down.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	identity, err := api.NewJWKSIdentity(ctx, down.URL, testJWT, api.JWKSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Config{DB: db, Pusher: &pusher.Client{Key: "k", Secret: "s"}, Identity: identity}).Handler())
	t.Cleanup(srv.Close)
	a := get(t, srv.URL+"/readyz")
	if a.status != http.StatusServiceUnavailable || !strings.Contains(a.body, "no key fetched from API_JWKS_URL") {
		t.Errorf("/readyz without keys: %d %q, want 503 naming the key set", a.status, a.body)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	_ = sqlDB.Close()
	a = get(t, srv.URL+"/readyz")
	if a.status != http.StatusServiceUnavailable || !strings.Contains(a.body, "database: ") {
		t.Errorf("/readyz with the database closed: %d %q, want 503 naming the database", a.status, a.body)
	}
}
