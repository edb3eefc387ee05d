package worker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomcast/roomcast/internal/testsupport"

	"github.com/roomcast/roomcast/config"

	"github.com/roomcast/roomcast/publishers"
)

// tcpProxy forwards connections to a Postgres server, counts the pings the
// clients send (pgx's ping is the simple query "-- ping", always sent as
// text, where other statements are prepared once per connection), and can cut the way to the server: every
// connection is closed and new ones are accepted and closed at once, as
// when Postgres is down behind a load balancer.
type tcpProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]bool

	pings atomic.Int64
}

func startTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() {
		_ = ln.Close()
		p.setCut(true)
	})
	go p.accept()
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		go func() {
			_, _ = io.Copy(c, up)
			_ = c.Close()
		}()
		go func() {
			_, _ = io.Copy(up, &countingReader{r: c, p: p})
			_ = up.Close()
		}()
	}
}

// setCut closes every connection and refuses new ones (true), or lets them
// through again (false).
func (p *tcpProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			_ = c.Close()
		}
		clear(p.conns)
	}
}

// countingReader counts the pings in a client's stream, across reads.
type countingReader struct {
	r    io.Reader
	p    *tcpProxy
	tail []byte
}

var pingMarker = []byte("-- ping")

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if n > 0 {
		buf := append(c.tail, b[:n]...)
		c.p.pings.Add(int64(bytes.Count(buf, pingMarker)))
		c.tail = bytes.Clone(buf[max(0, len(buf)-len(pingMarker)+1):])
	}
	return n, err
}

// proxiedWorker runs a worker with env and its database (dbURL) behind a
// proxy and returns the worker, its logs and the proxy.
func proxiedWorker(t *testing.T, env map[string]string, dbURL string) (*Worker, *testsupport.SyncBuffer, *tcpProxy) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startTCPProxy(t, u.Host)
	u.Host = proxy.addr()
	cfg, err := config.Load(func(name string) string {
		if name == "DATABASE_URL" {
			return u.String()
		}
		return env[name]
	}, config.Kafka, config.Database, config.Pusher, config.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	w, logs := runWorker(t, cfg)
	return w, logs, proxy
}

// TestReadyzHidesDatabaseDetails: with Postgres unreachable, /readyz says so
// in a short line without the database's host, port, user, name or
// password, and the log has the detail once (without the password).
func TestReadyzHidesDatabaseDetails(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	// The test cluster trusts local connections: the password is ignored,
	// but it is in the URL the worker has.
	const pw = "readyz-pw-51c2e"
	dbURL := strings.Replace(env["DATABASE_URL"], "postgres://postgres@", "postgres://postgres:"+pw+"@", 1)
	if dbURL == env["DATABASE_URL"] {
		t.Fatalf("cannot add a password to %s", env["DATABASE_URL"])
	}
	w, logs, proxy := proxiedWorker(t, env, dbURL)
	u, _ := url.Parse(dbURL)
	host, port, _ := net.SplitHostPort(proxy.addr())
	dbName := strings.TrimPrefix(u.Path, "/")

	proxy.setCut(true)
	leaks := map[string]string{
		"host": host, "port": port, "database name": dbName, "password": pw,
		"user (user=)": "user=", "URL": "postgres://", "driver text": "failed to connect",
	}
	seen := map[string]bool{}
	check := func(body string) {
		if seen[body] {
			return
		}
		seen[body] = true
		t.Logf("/readyz with Postgres down:\n%s", body)
		for what, secret := range leaks {
			if strings.Contains(body, secret) {
				t.Errorf("/readyz shows the database's %s (%q):\n%s", what, secret, body)
			}
		}
		for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
			if len(line) > 120 {
				t.Errorf("/readyz line of %d characters: %q", len(line), line)
			}
		}
	}
	testsupport.WaitFor(t, 60*time.Second, "/readyz to report Postgres down", func() (bool, string) {
		code, b, err := httpGet(w.addr, "/readyz")
		return err == nil && code == 503 && strings.Contains(b, "postgres:"), fmt.Sprintf("%d %q %v", code, b, err)
	})
	// Over the next rounds (each a new attempt to connect), every answer
	// stays as short and the detail is logged once.
	w.readiness.mu.Lock()
	rounds := w.readiness.rounds
	w.readiness.mu.Unlock()
	testsupport.WaitFor(t, 60*time.Second, "three more rounds of checks", func() (bool, string) {
		if code, b, err := httpGet(w.addr, "/readyz"); err == nil && code == 503 {
			check(b)
		}
		w.readiness.mu.Lock()
		defer w.readiness.mu.Unlock()
		return w.readiness.rounds >= rounds+3, fmt.Sprintf("%d rounds", w.readiness.rounds-rounds)
	})
	proxy.setCut(false)
	waitHTTPReady(t, w.addr, nil, logs)
	log := logs.String()
	if n := strings.Count(log, "readiness: postgres: unreachable"); n != 1 {
		t.Errorf("the log has %d lines on Postgres being unreachable, want 1:\n%s", n, logs.Tail(30))
	}
	if n := strings.Count(log, "readiness: postgres is back"); n != 1 {
		t.Errorf("the log has %d lines on Postgres being back, want 1:\n%s", n, logs.Tail(30))
	}
	t.Logf("the log on readiness:\n%s", grepLines(log, "readiness"))
	if strings.Contains(log, pw) {
		t.Errorf("the log shows the database password")
	}
}

// TestReadyzBoundedChecks: a burst of concurrent /readyz requests is
// answered from the checker's snapshot; the database sees the checker's
// rounds, not one ping and version read per request.
func TestReadyzBoundedChecks(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	w, _, proxy := proxiedWorker(t, env, env["DATABASE_URL"])

	const waves, concurrent = 10, 30
	pings0 := proxy.pings.Load()
	start := time.Now()
	for range waves {
		var wg sync.WaitGroup
		for range concurrent {
			wg.Go(func() {
				if code, body, err := httpGet(w.addr, "/readyz"); err != nil || code != 200 {
					t.Errorf("GET /readyz: %d %q %v", code, body, err)
				}
			})
		}
		wg.Wait()
	}
	elapsed := time.Since(start)
	pings := proxy.pings.Load() - pings0
	// The checker pings once a round; connections are also pinged when
	// reused after a second idle (pgx's stdlib: the checker's migration
	// read, the dispatcher's one-second poll of the outbox). Bound by the
	// rounds and the seconds the burst lasted, never by the requests.
	rounds := int64(elapsed/readinessInterval) + 2
	limit := 3*rounds + 3*int64(elapsed/time.Second) + 3
	t.Logf("%d requests in %v: %d pings (at most %d allowed)", waves*concurrent, elapsed.Round(time.Millisecond), pings, limit)
	if pings > limit {
		t.Errorf("%d pings for %d requests over %v, want at most %d", pings, waves*concurrent, elapsed, limit)
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// stalls is a component that reports problems, as consumers.Consumer and
// publishers.Dispatcher do once their stall detection runs.
type stalls struct {
	mu    sync.Mutex
	lines []string
}

func (s *stalls) Problems() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lines
}

func (s *stalls) set(lines ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = lines
}

// TestReadinessComponentProblems: what a component reports makes the next
// round unready, as one short line without secrets, and its end makes it
// ready again; a check that fails is reported with its start time.
func TestReadinessComponentProblems(t *testing.T) {
	t.Parallel()
	cfg := config.Config{DatabaseURL: "postgres://u:hunter2-pw@db.internal:5432/app", Pusher: publishers.ClientConfig{Secret: "pusher-secret-x"}}
	var logs testsupport.SyncBuffer
	src := &stalls{}
	var failing atomic.Bool
	check := &readinessCheck{name: "postgres", probe: func(context.Context) (string, error) {
		if failing.Load() {
			return "unreachable", fmt.Errorf("dial postgres://u:hunter2-pw@db.internal:5432/app?sslmode=disable: refused")
		}
		return "", nil
	}}
	r := newReadiness(slog.New(slog.NewTextHandler(&logs, nil)), secretsOf(cfg), []problemSource{src}, check)
	if got := r.snapshot(time.Now()); len(got) != 1 || !strings.Contains(got[0], "starting") {
		t.Errorf("before the first round: %q, want one line saying it is starting", got)
	}
	r.round(t.Context())
	if got := r.snapshot(time.Now()); len(got) != 0 {
		t.Errorf("healthy: %q", got)
	}

	src.set("partition chat.events/3 has not advanced for 2m10s with 1200 messages of lag",
		"signed https://api-eu.pusher.com/apps/1/events?auth_key=k&auth_signature=abc\nsecond line "+strings.Repeat("x", 400))
	failing.Store(true)
	r.round(t.Context())
	got := r.snapshot(time.Now())
	t.Logf("unready:\n%s", strings.Join(got, "\n"))
	if len(got) != 3 || !strings.HasPrefix(got[0], "postgres: unreachable since ") || got[1] != "partition chat.events/3 has not advanced for 2m10s with 1200 messages of lag" {
		t.Fatalf("unready: %q", got)
	}
	if strings.Contains(got[2], "auth_signature") || strings.Contains(got[2], "\n") || len(got[2]) > maxProblemLen+3 {
		t.Errorf("a component's line is not cut to one short line without the URL's query: %q", got[2])
	}
	since := got[0]
	r.round(t.Context())
	if again := r.snapshot(time.Now()); again[0] != since {
		t.Errorf("a second failing round moved the start: %q, then %q", since, again[0])
	}
	if strings.Contains(logs.String(), "hunter2-pw") || strings.Contains(logs.String(), "postgres://u:") {
		t.Errorf("the log shows the password or the URL:\n%s", logs.String())
	}
	if n := strings.Count(logs.String(), "readiness: postgres: unreachable"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, logs.String())
	}

	src.set()
	failing.Store(false)
	r.round(t.Context())
	if got := r.snapshot(time.Now()); len(got) != 0 {
		t.Errorf("after the problems ended: %q", got)
	}
	if got := r.snapshot(time.Now().Add(staleAfter + time.Second)); len(got) != 1 || !strings.Contains(got[0], "have not completed") {
		t.Errorf("a snapshot older than %v: %q, want the checker reported stuck", staleAfter, got)
	}
}
