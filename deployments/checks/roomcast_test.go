package checks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5/pgxpool"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/fakepusher"
	"github.com/roomcast/roomcast/internal/testsupport"
)

// The checks run roomcast as an operator does: the binary, built from the
// repository, started as a subprocess with the environment a deployment
// gives it.

func TestMain(m *testing.M) { testsupport.Main(m) }

// repoRoot is the repository (roomcast's module) this module sits in.
var repoRoot = func() string {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		panic(err)
	}
	return root
}()

// binary is the roomcast binary the tests that run at the same time share.
var binary struct {
	mu    sync.Mutex
	users int
	dir   string
}

// roomcastBinary returns the path of the roomcast binary, built from the
// repository on first use. The tests running at the same time share one
// build; it is removed when the last of them ends (testsupport.Main exits
// the test binary, so TestMain cannot remove it after the tests).
func roomcastBinary(t *testing.T) string {
	t.Helper()
	binary.mu.Lock()
	defer binary.mu.Unlock()
	if binary.users == 0 {
		dir, err := os.MkdirTemp("", "roomcast-checks-")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		build := exec.CommandContext(ctx, goTool(), "build", "-o", filepath.Join(dir, "roomcast"), "./cmd/roomcast")
		build.Dir = repoRoot
		if out, err := build.CombinedOutput(); err != nil {
			_ = os.RemoveAll(dir)
			t.Fatalf("go build ./cmd/roomcast: %v\n%s", err, out)
		}
		binary.dir = dir
	}
	binary.users++
	t.Cleanup(func() {
		binary.mu.Lock()
		defer binary.mu.Unlock()
		if binary.users--; binary.users == 0 {
			_ = os.RemoveAll(binary.dir)
		}
	})
	return filepath.Join(binary.dir, "roomcast")
}

func goTool() string {
	if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}

// environ turns env into a process environment, sorted (and nothing else:
// not the test's own environment).
func environ(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

// roomcastCmd runs `roomcast args` with exactly env and returns its exit
// status (-1 when it could not run or did not end in time), standard output
// and standard error.
func roomcastCmd(bin string, args []string, env map[string]string, timeout time.Duration) (int, string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = environ(env)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String(), nil
	case ctx.Err() != nil:
		return -1, stdout.String(), stderr.String(), fmt.Errorf("did not end within %v", timeout)
	case errors.As(err, &exit):
		return exit.ExitCode(), stdout.String(), stderr.String(), nil
	default:
		return -1, stdout.String(), stderr.String(), err
	}
}

const (
	testAppID  = "roomcast-test"
	testKey    = "test-key"
	testSecret = "pusher-secret-9d27c1"
)

// stack is the real world a worker runs against: an in-process Kafka, a fresh
// Postgres database (migrated), and a fake Pusher HTTP API.
type stack struct {
	t       *testing.T
	bin     string
	brokers []string
	topic   string
	dlq     string
	dbURL   string
	db      *pgxpool.Pool
	pusher  *fakepusher.Server
	env     map[string]string

	prodOnce sync.Once
	producer sarama.SyncProducer
	prodErr  error
}

// newStack starts Kafka, a database and fake Pusher, and migrates the
// database up with `roomcast migrate up`.
func newStack(t *testing.T, bin string) *stack {
	t.Helper()
	k := testsupport.Kafka(t, map[string]int32{"chat.events": 12, "chat.events.dlq": 1})
	dbURL := testsupport.Postgres(t)
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatalf("pgxpool: %v", err)
	}
	t.Cleanup(pool.Close)
	p, err := fakepusher.Start(fakepusher.Config{AppID: testAppID, Key: testKey, Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	s := &stack{
		t: t, bin: bin, brokers: k.Brokers, topic: k.Topics["chat.events"], dlq: k.Topics["chat.events.dlq"],
		dbURL: dbURL, db: pool, pusher: p,
	}
	s.env = map[string]string{
		"KAFKA_BROKERS":        strings.Join(k.Brokers, ","),
		"KAFKA_TOPIC":          s.topic,
		"KAFKA_DLQ_TOPIC":      s.dlq,
		"KAFKA_CONSUMER_GROUP": "roomcast-test",
		"DATABASE_URL":         dbURL,
		"PUSHER_APP_ID":        testAppID,
		"PUSHER_KEY":           testKey,
		"PUSHER_SECRET":        testSecret,
		"PUSHER_HOST":          p.Host(),
		"PUSHER_USE_TLS":       "false",
		"SHUTDOWN_TIMEOUT":     "30s",
		"LOG_LEVEL":            "info",
		// Keep delivered outbox rows unless a test asks for the default
		// (deleted as Pusher accepts them).
		"DELIVERY_RETENTION": "24h",
	}
	t.Cleanup(func() {
		if s.producer != nil {
			_ = s.producer.Close()
		}
	})
	if code, out, errOut, err := roomcastCmd(bin, []string{"migrate", "up"}, s.env, 2*time.Minute); code != 0 || err != nil {
		t.Fatalf("roomcast migrate up: exit %d, %v\n%s%s", code, err, out, errOut)
	}
	return s
}

// worker is one `roomcast run` subprocess.
type worker struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string
	logs *syncBuffer
	done chan struct{}
	err  error // Wait's result, once done is closed
	once sync.Once
}

// startWorker runs `roomcast run` on a free port with the stack's
// environment and overrides. It is stopped (and must exit 0) at the end of
// the test unless stopped before.
func (s *stack) startWorker(overrides map[string]string) *worker {
	s.t.Helper()
	w := &worker{t: s.t, addr: freeAddr(s.t), logs: &syncBuffer{}, done: make(chan struct{})}
	env := map[string]string{"HTTP_ADDR": w.addr}
	for k, v := range s.env {
		env[k] = v
	}
	for k, v := range overrides {
		env[k] = v
	}
	w.cmd = exec.Command(s.bin, "run")
	w.cmd.Env = environ(env)
	w.cmd.Stdout, w.cmd.Stderr = w.logs, w.logs
	if err := w.cmd.Start(); err != nil {
		s.t.Fatalf("start roomcast run: %v", err)
	}
	go func() {
		w.err = w.cmd.Wait()
		close(w.done)
	}()
	s.t.Cleanup(func() {
		if err := w.shutdown(); err != nil {
			s.t.Errorf("roomcast run: %v\nlog tail:\n%s", err, w.logs.tail(40))
		}
	})
	return w
}

// shutdown sends SIGTERM, as a deployment stops the worker, and returns how
// it exited.
func (w *worker) shutdown() error {
	w.once.Do(func() {
		select {
		case <-w.done:
			return
		default:
		}
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-w.done:
		case <-time.After(45 * time.Second):
			_ = w.cmd.Process.Kill()
			<-w.done
			w.err = fmt.Errorf("did not exit within 45s of SIGTERM (%v)", w.err)
		}
	})
	<-w.done
	return w.err
}

// stop stops the worker and fails the test unless it exited 0.
func (w *worker) stop() {
	w.t.Helper()
	if err := w.shutdown(); err != nil {
		w.t.Fatalf("roomcast run: %v\nlog tail:\n%s", err, w.logs.tail(40))
	}
}

// waitReady waits until /readyz answers 200.
func (w *worker) waitReady() {
	w.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		select {
		case <-w.done:
			w.t.Fatalf("roomcast run exited before it was ready: %v\nlog tail:\n%s", w.err, w.logs.tail(40))
		default:
		}
		code, body, err := httpGet(w.addr, "/readyz")
		if err == nil && code == 200 {
			return
		}
		last = fmt.Sprintf("%d %s %v", code, strings.TrimSpace(body), err)
		time.Sleep(50 * time.Millisecond)
	}
	w.t.Fatalf("/readyz not 200 within 60s; last answer: %s\nlog tail:\n%s", last, w.logs.tail(40))
}

// ---- Kafka ----

type kmsg struct {
	key   string
	value []byte
}

// produce sends messages with their keys.
func (s *stack) produce(msgs ...kmsg) {
	s.t.Helper()
	s.prodOnce.Do(func() {
		cfg := sarama.NewConfig()
		cfg.Producer.Return.Successes = true
		cfg.Producer.RequiredAcks = sarama.WaitForAll
		s.producer, s.prodErr = sarama.NewSyncProducer(s.brokers, cfg)
	})
	if s.prodErr != nil {
		s.t.Fatalf("producer: %v", s.prodErr)
	}
	pms := make([]*sarama.ProducerMessage, len(msgs))
	for i, m := range msgs {
		pms[i] = &sarama.ProducerMessage{Topic: s.topic, Key: sarama.StringEncoder(m.key), Value: sarama.ByteEncoder(m.value)}
	}
	if err := s.producer.SendMessages(pms); err != nil {
		s.t.Fatalf("produce %d messages: %v", len(msgs), err)
	}
}

func (s *stack) produceEvents(events ...*chattest.Event) {
	s.t.Helper()
	msgs := make([]kmsg, len(events))
	for i, e := range events {
		msgs[i] = kmsg{key: e.Key(), value: e.JSON()}
	}
	s.produce(msgs...)
}

// topicSize is the number of messages in topic (sum of newest offsets).
func topicSize(t testing.TB, brokers []string, topic string) int64 {
	t.Helper()
	client, err := sarama.NewClient(brokers, sarama.NewConfig())
	if err != nil {
		t.Fatalf("kafka client: %v", err)
	}
	defer func() { _ = client.Close() }()
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	var n int64
	for _, p := range parts {
		newest, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatalf("offset of %s/%d: %v", topic, p, err)
		}
		n += newest
	}
	return n
}

// ---- Postgres ----

func (s *stack) count(query string, args ...any) (int64, error) {
	var n int64
	err := s.db.QueryRow(context.Background(), query, args...).Scan(&n)
	return n, err
}

func (s *stack) mustCount(query string, args ...any) int64 {
	s.t.Helper()
	n, err := s.count(query, args...)
	if err != nil {
		s.t.Fatalf("%s: %v", query, err)
	}
	return n
}

// waitCount waits until query counts want.
func (s *stack) waitCount(timeout time.Duration, want int64, query string, args ...any) {
	s.t.Helper()
	waitFor(s.t, timeout, query, func() (bool, string) {
		n, err := s.count(query, args...)
		return err == nil && n == want, fmt.Sprintf("got %d (%v), want %d", n, err, want)
	})
}

// ---- HTTP and metrics ----

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func httpGet(addr, path string) (int, string, error) {
	resp, err := httpClient.Get("http://" + addr + path)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// scrape reads the worker's /metrics as Prometheus does.
func scrape(addr string) (map[string]*dto.MetricFamily, error) {
	code, body, err := httpGet(addr, "/metrics")
	if err != nil {
		return nil, err
	}
	if code != 200 {
		return nil, fmt.Errorf("GET /metrics: %d", code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(strings.NewReader(body))
}

// sum adds the values of the counters or gauges of family name.
func sum(fams map[string]*dto.MetricFamily, name string) float64 {
	var total float64
	for _, m := range fams[name].GetMetric() {
		total += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
	}
	return total
}

// ---- waiting ----

// waitFor polls cond until it holds or timeout passes (then the test fails
// with cond's last status).
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, status := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", timeout, what, status)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// syncBuffer is a buffer safe for a process's output and a test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) tail(n int) string {
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func grepLines(s, substr string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
