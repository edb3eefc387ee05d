package api_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/roomcast/roomcast/api"
	"github.com/roomcast/roomcast/config"
)

// The benchmark's Pusher app and token secret.
const (
	benchPusherKey    = "bench-key"
	benchPusherSecret = "bench-secret"
	benchJWTSecret    = "a-benchmark-secret-of-at-least-32-bytes"
)

// BenchmarkAPIAuthAndCatchUp measures `roomcast api` (api.Start, as the
// command runs it, with an HS256 identity and the default database pool)
// over HTTP on a history of API_BENCH_EVENTS events (default 1,000,000:
// 1,000 rooms of 1,000 events, 20 members each; see seedHistory), in a
// Postgres with default durability. Two loads run one after the other,
// each API_BENCH_REQUESTS requests (default 20,000) sent back to back by
// API_BENCH_CLIENTS clients (default 200), each client a member with its
// own token and keep-alive connection: POST /pusher/auth of its rooms'
// private and presence channels, then GET /rooms/{roomId}/events pages of
// 100 at random positions. A request is timed from sending it to the last
// byte of the answer. It fails unless every answer is 200 (a sample checked
// in full: signatures, seqs) and the feed's statement reads through
// events_room_seq.
func BenchmarkAPIAuthAndCatchUp(b *testing.B) {
	events := benchEnvInt(b, "API_BENCH_EVENTS", 1_000_000)
	requests := benchEnvInt(b, "API_BENCH_REQUESTS", 20_000)
	clientCount := benchEnvInt(b, "API_BENCH_CLIENTS", 200)

	dbURL, h, postmaster := benchDatabase(b, events)
	checkFeedPlan(b, dbURL, h)

	base, pool := startAPI(b, dbURL)
	clients := benchClients(b, h, clientCount)
	transport := &http.Transport{MaxIdleConns: clientCount, MaxIdleConnsPerHost: clientCount, IdleConnTimeout: time.Minute}
	b.Cleanup(transport.CloseIdleConnections)
	httpc := &http.Client{Transport: transport, Timeout: time.Minute}
	benchReport(b, "load: %d clients (one connection each), %d requests per load; the API's database pool: %d connections (DATABASE_MAX_CONNS' default)",
		len(clients), requests, pool)

	cpu := func() (self, pg float64) { return processCPUSeconds(), clusterCPUSeconds(postmaster) }
	b.ResetTimer()
	var auth, catchUp loadResult
	for range b.N {
		auth = runLoad(b, clients, requests, cpu, func(c *benchClient, i int, rng *rand.Rand) (time.Duration, error) {
			return authorizeOnce(httpc, base, c, i, rng)
		})
		catchUp = runLoad(b, clients, requests, cpu, func(c *benchClient, i int, rng *rand.Rand) (time.Duration, error) {
			return catchUpOnce(httpc, base, h, c, i, rng)
		})
	}
	b.StopTimer()
	benchReport(b, "auth: %s", auth)
	benchReport(b, "catch-up: %s", catchUp)
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		benchReport(b, "peak RSS of the benchmark process (API, clients and seed): %d MB", ru.Maxrss/1024)
	}
	b.ReportMetric(auth.perSecond(), "auth-req/s")
	b.ReportMetric(ms(auth.p50), "auth-p50-ms")
	b.ReportMetric(ms(auth.p99), "auth-p99-ms")
	b.ReportMetric(catchUp.perSecond(), "catchup-req/s")
	b.ReportMetric(ms(catchUp.p50), "catchup-p50-ms")
	b.ReportMetric(ms(catchUp.p99), "catchup-p99-ms")
	b.ReportMetric(float64(h.events), "events-in-db")
}

// startAPI runs `roomcast api` on dbURL until the benchmark ends, configured
// from settings as the command is, and returns its base URL and pool size.
func startAPI(b *testing.B, dbURL string) (string, int) {
	b.Helper()
	env := map[string]string{
		"DATABASE_URL":   dbURL,
		"API_ADDR":       "127.0.0.1:0",
		"API_JWT_SECRET": benchJWTSecret,
		"PUSHER_APP_ID":  "1",
		"PUSHER_KEY":     benchPusherKey,
		"PUSHER_SECRET":  benchPusherSecret,
	}
	cfg, err := config.Load(func(name string) string { return env[name] }, config.Database, config.API)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	svc, err := api.Start(ctx, cfg, log)
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("roomcast api: %v", err)
		}
	})
	return "http://" + svc.Addr(), cfg.DatabaseMaxConns
}

// benchClient is one user of the load: its token and its rooms.
type benchClient struct {
	user  string
	token string
	rooms []string
}

// benchClients mints a token for each of n members (members repeat when the
// rooms have fewer than n), valid for an hour.
func benchClients(b *testing.B, h *benchHistory, n int) []*benchClient {
	b.Helper()
	users := make([]string, 0, len(h.userRooms))
	for u := range h.userRooms {
		users = append(users, u)
	}
	slices.Sort(users)
	rand.New(rand.NewPCG(17, 2)).Shuffle(len(users), func(i, j int) { users[i], users[j] = users[j], users[i] })
	if len(users) == 0 {
		b.Fatal("the seed has no members")
	}
	now := time.Now()
	clients := make([]*benchClient, n)
	for i := range clients {
		u := users[i%len(users)]
		token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub": u, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		}).SignedString([]byte(benchJWTSecret))
		if err != nil {
			b.Fatal(err)
		}
		clients[i] = &benchClient{user: u, token: token, rooms: h.userRooms[u]}
	}
	return clients
}

// loadResult is what a load measured.
type loadResult struct {
	requests      int
	elapsed       time.Duration
	p50, p99, max time.Duration
	cpuSelf       float64 // CPU seconds of this process (the API and the clients)
	cpuPG         float64 // CPU seconds of the Postgres cluster (0: not on this machine)
}

func (r loadResult) perSecond() float64 { return float64(r.requests) / r.elapsed.Seconds() }

func (r loadResult) String() string {
	return fmt.Sprintf("%d requests in %v: %.0f req/s, p50 %.2f ms, p99 %.2f ms, max %.2f ms; "+
		"CPU per request: %.0f µs in the API and clients' process, %.0f µs in Postgres",
		r.requests, r.elapsed.Round(time.Millisecond), r.perSecond(), ms(r.p50), ms(r.p99), ms(r.max),
		r.cpuSelf*1e6/float64(r.requests), r.cpuPG*1e6/float64(r.requests))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// runLoad has every client send one request unmeasured (its connection
// opened), then total requests sent back to back by all clients at once,
// request i by whichever client is free; send returns a request's latency.
// cpu reads the CPU seconds used so far (see loadResult).
func runLoad(b *testing.B, clients []*benchClient, total int, cpu func() (self, pg float64), send func(c *benchClient, i int, rng *rand.Rand) (time.Duration, error)) loadResult {
	b.Helper()
	var (
		next     atomic.Int64
		failed   atomic.Bool
		firstErr error
		errOnce  sync.Once
		wg       sync.WaitGroup
		warm     sync.WaitGroup
		begin    = make(chan struct{})
	)
	latencies := make([][]time.Duration, len(clients))
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err })
		failed.Store(true)
	}
	for k, c := range clients {
		wg.Add(1)
		warm.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(k), 3))
			if _, err := send(c, -1, rng); err != nil {
				fail(err)
			}
			warm.Done()
			<-begin
			own := make([]time.Duration, 0, total/len(clients)+1)
			for !failed.Load() {
				i := int(next.Add(1)) - 1
				if i >= total {
					break
				}
				d, err := send(c, i, rng)
				if err != nil {
					fail(err)
					break
				}
				own = append(own, d)
			}
			latencies[k] = own
		}()
	}
	warm.Wait()
	self0, pg0 := cpu()
	start := time.Now()
	close(begin)
	wg.Wait()
	elapsed := time.Since(start)
	self1, pg1 := cpu()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	all := slices.Concat(latencies...)
	slices.Sort(all)
	if len(all) != total {
		b.Fatalf("%d requests timed, want %d", len(all), total)
	}
	at := func(q float64) time.Duration { return all[min(len(all)-1, int(q*float64(len(all))))] }
	return loadResult{requests: total, elapsed: elapsed, p50: at(0.50), p99: at(0.99), max: all[len(all)-1],
		cpuSelf: self1 - self0, cpuPG: pg1 - pg0}
}

// checkEvery is how often an answer is checked in full rather than by its
// status only: the clients share the two cores with the API and Postgres.
const checkEvery = 50

// authorizeOnce asks POST /pusher/auth as pusher-js does for one of the
// client's rooms, its private channel on even i and its presence channel on
// odd i, with a fresh socket id.
func authorizeOnce(httpc *http.Client, base string, c *benchClient, i int, rng *rand.Rand) (time.Duration, error) {
	room := c.rooms[rng.IntN(len(c.rooms))]
	channel := "private-room-" + room
	if i%2 != 0 {
		channel = "presence-room-" + room
	}
	socket := strconv.Itoa(rng.IntN(1e9)) + "." + strconv.Itoa(rng.IntN(1e9))
	form := url.Values{"socket_id": {socket}, "channel_name": {channel}}.Encode()
	req, err := http.NewRequest(http.MethodPost, base+"/pusher/auth", strings.NewReader(form))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+c.token)
	d, body, err := timed(httpc, req)
	if err != nil || i%checkEvery != 0 {
		return d, err
	}
	var got struct {
		Auth        string `json:"auth"`
		ChannelData string `json:"channel_data"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		return d, fmt.Errorf("authorization of %s: %v in %s", channel, err, body)
	}
	signed := socket + ":" + channel
	if got.ChannelData != "" {
		signed += ":" + got.ChannelData
		if !strings.Contains(got.ChannelData, `"user_id":"`+c.user+`"`) {
			return d, fmt.Errorf("authorization of %s for %s: channel_data %s", channel, c.user, got.ChannelData)
		}
	} else if strings.HasPrefix(channel, "presence-") {
		return d, fmt.Errorf("authorization of %s: no channel_data in %s", channel, body)
	}
	mac := hmac.New(sha256.New, []byte(benchPusherSecret))
	mac.Write([]byte(signed))
	if want := benchPusherKey + ":" + hex.EncodeToString(mac.Sum(nil)); got.Auth != want {
		return d, fmt.Errorf("authorization of %s: auth %q, want %q", channel, got.Auth, want)
	}
	return d, nil
}

// catchUpOnce asks a page of 100 events of one of the client's rooms after
// a random seq, as a client does after a reconnect.
func catchUpOnce(httpc *http.Client, base string, h *benchHistory, c *benchClient, i int, rng *rand.Rand) (time.Duration, error) {
	room := c.rooms[rng.IntN(len(c.rooms))]
	last := h.lastSeq[room]
	after := rng.Int64N(max(1, last-100+1))
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/rooms/%s/events?after_seq=%d&limit=100", base, room, after), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	d, body, err := timed(httpc, req)
	if err != nil || i%checkEvery != 0 {
		return d, err
	}
	var page feedPage
	if err := json.Unmarshal(body, &page); err != nil {
		return d, fmt.Errorf("events of %s after %d: %v", room, after, err)
	}
	want := min(100, int(last-after))
	if page.LastSeq != last || len(page.Events) != want || page.More != (last-after > 100) ||
		want > 0 && (page.Events[0].Seq != after+1 || page.Events[want-1].Seq != after+int64(want)) {
		return d, fmt.Errorf("events of %s after %d: lastSeq %d, %d events, more %v; want lastSeq %d, seqs %d..%d",
			room, after, page.LastSeq, len(page.Events), page.More, last, after+1, after+int64(want))
	}
	return d, nil
}

// timed sends req and reads the whole answer, failing on any status but 200.
func timed(httpc *http.Client, req *http.Request) (time.Duration, []byte, error) {
	start := time.Now()
	resp, err := httpc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	d := time.Since(start)
	if err != nil {
		return d, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return d, nil, fmt.Errorf("%s %s: %d %s", req.Method, req.URL.Path, resp.StatusCode, body)
	}
	return d, body, nil
}

// benchReport logs a line of the benchmark's report and prints it on
// stderr as well: a benchmark's log keeps only its first lines, and the plan
// alone is longer.
func benchReport(b *testing.B, format string, args ...any) {
	b.Helper()
	msg := fmt.Sprintf(format, args...)
	if first, _, multi := strings.Cut(msg, "\n"); multi {
		b.Log(first + " (in full on stderr)")
	} else {
		b.Log(msg)
	}
	fmt.Fprintf(os.Stderr, "%s api-bench %s\n", time.Now().Format("15:04:05"), msg)
}
