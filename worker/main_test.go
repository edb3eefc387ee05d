package worker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/config"
	"github.com/roomcast/roomcast/internal/fakepusher"
	"github.com/roomcast/roomcast/internal/testsupport"
)

func TestMain(m *testing.M) { testsupport.Main(m) }

// testEnv is the environment of a worker under test: an in-process Kafka, a
// fresh database with roomcast's migrations applied (DATABASE_URL) and a
// fake Pusher.
func testEnv(t *testing.T) map[string]string {
	t.Helper()
	k := testsupport.Kafka(t, map[string]int32{"chat.events": 12, "chat.events.dlq": 1})
	_, dbURL := testsupport.Database(t, 2)
	p, err := fakepusher.Start(fakepusher.Config{AppID: "roomcast-test", Key: "test-key", Secret: "pusher-secret-9d27c1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return map[string]string{
		"KAFKA_BROKERS":        strings.Join(k.Brokers, ","),
		"KAFKA_TOPIC":          k.Topics["chat.events"],
		"KAFKA_DLQ_TOPIC":      k.Topics["chat.events.dlq"],
		"KAFKA_CONSUMER_GROUP": "roomcast-test",
		"DATABASE_URL":         dbURL,
		"PUSHER_APP_ID":        "roomcast-test",
		"PUSHER_KEY":           "test-key",
		"PUSHER_SECRET":        "pusher-secret-9d27c1",
		"PUSHER_HOST":          p.Host(),
		"PUSHER_USE_TLS":       "false",
		"SHUTDOWN_TIMEOUT":     "30s",
		"HTTP_ADDR":            "127.0.0.1:0",
	}
}

// runWorker runs a worker with cfg until t ends, and returns it once
// /readyz answers 200, with its log.
func runWorker(t *testing.T, cfg config.Config) (*Worker, *testsupport.SyncBuffer) {
	t.Helper()
	logs := &testsupport.SyncBuffer{}
	w, err := New(t.Context(), cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatalf("worker: %v\nlog tail:\n%s", err, logs.Tail(40))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("worker: Run returned %v\nlog tail:\n%s", err, logs.Tail(40))
			}
		case <-time.After(45 * time.Second):
			t.Errorf("worker did not stop within 45s")
		}
	})
	select {
	case <-w.Started():
	case err := <-done:
		t.Fatalf("worker exited at start: %v\nlog tail:\n%s", err, logs.Tail(40))
	case <-time.After(60 * time.Second):
		t.Fatalf("worker did not start within 60s\nlog tail:\n%s", logs.Tail(40))
	}
	waitHTTPReady(t, w.Addr(), done, logs)
	return w, logs
}

func waitHTTPReady(t *testing.T, addr string, done <-chan error, logs *testsupport.SyncBuffer) {
	t.Helper()
	testsupport.WaitFor(t, 30*time.Second, "/readyz to answer 200", func() (bool, string) {
		select {
		case err := <-done:
			t.Fatalf("worker exited before it was ready: %v\nlog tail:\n%s", err, logs.Tail(40))
		default:
		}
		code, body, err := httpGet(addr, "/readyz")
		return err == nil && code == 200, fmt.Sprintf("%d %s %v\nlog tail:\n%s", code, strings.TrimSpace(body), err, logs.Tail(40))
	})
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
