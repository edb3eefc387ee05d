package checks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// `roomcast api` as the checks run it: a subprocess on the stack's database,
// asked over HTTP as a browser and Prometheus ask it.

// runningAPI is a `roomcast api` the facts were read from.
type runningAPI struct {
	addr    string
	metrics map[string]*dto.MetricFamily
}

// startAPIWithTraffic starts `roomcast api` on s, which the worker has
// given room-d1 with member user-d1, and sends it what gives each of its
// metrics a series: probes, a request without a token, a member's channel
// authorization and events.
func startAPIWithTraffic(t *testing.T, s *stack) runningAPI {
	t.Helper()
	api := s.startAPI(nil)
	api.waitReady()
	member := apiToken(t, "user-d1")
	for _, r := range []struct {
		method, path, token string
		form                url.Values
		want                int
	}{
		{"GET", "/healthz", "", nil, 200},
		{"GET", "/rooms/room-d1/events", "", nil, 401},
		{"GET", "/rooms/room-d1/events", member, nil, 200},
		{"POST", "/pusher/auth", member, url.Values{"socket_id": {"123.456"}, "channel_name": {"private-room-room-d1"}}, 200},
	} {
		code, body, err := apiRequest(api.addr, r.method, r.path, r.token, r.form)
		if err != nil || code != r.want {
			t.Fatalf("roomcast api: %s %s: %d %s (%v), want %d\nlog tail:\n%s", r.method, r.path, code, body, err, r.want, api.logs.Tail(40))
		}
	}
	fams, err := scrape(api.addr)
	if err != nil {
		t.Fatalf("roomcast api's /metrics: %v", err)
	}
	for _, name := range []string{"roomcast_api_requests_total", "roomcast_api_request_duration_seconds", "roomcast_api_identity_refusals_total"} {
		if _, ok := fams[name]; !ok {
			t.Fatalf("roomcast api's /metrics has no %s after the requests", name)
		}
	}
	return runningAPI{addr: api.addr, metrics: fams}
}

// apiToken is a bearer token of user that `roomcast api` started by
// stack.startAPI accepts: HS256 with apiJWTSecret, valid for an hour.
func apiToken(t *testing.T, user string) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signed := enc(map[string]string{"alg": "HS256", "typ": "JWT"}) + "." +
		enc(map[string]any{"sub": user, "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()})
	mac := hmac.New(sha256.New, []byte(apiJWTSecret))
	mac.Write([]byte(signed))
	return signed + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// apiRequest sends method path to the API at addr, with a bearer token
// unless token is "" and a form body unless form is nil.
func apiRequest(addr, method, path, token string, form url.Values) (int, string, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, "http://"+addr+path, body)
	if err != nil {
		return 0, "", err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
