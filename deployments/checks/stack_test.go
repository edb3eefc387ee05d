package checks

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/fakepusher"
	"github.com/roomcast/roomcast/internal/testsupport"
)

// The world `roomcast run` runs against in the checks, and the worker (and
// `roomcast api`) itself as a subprocess of the tests.

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

// worker is one `roomcast run` (or `roomcast api`) subprocess.
type worker struct {
	t       *testing.T
	command string // run or api
	cmd     *exec.Cmd
	addr    string
	logs    *testsupport.SyncBuffer
	done    chan struct{}
	err     error // Wait's result, once done is closed
	once    sync.Once
}

// startWorker runs `roomcast run` on a free port with the stack's
// environment and overrides. It is stopped (and must exit 0) at the end of
// the test unless stopped before.
func (s *stack) startWorker(overrides map[string]string) *worker {
	s.t.Helper()
	return s.start("run", "HTTP_ADDR", overrides)
}

// apiJWTSecret signs the tokens `roomcast api` accepts in the checks.
const apiJWTSecret = "checks-api-jwt-secret-of-32-bytes-or-more"

// startAPI runs `roomcast api` on a free port, on the stack's database and
// Pusher app, taking tokens signed with apiJWTSecret, with overrides.
func (s *stack) startAPI(overrides map[string]string) *worker {
	s.t.Helper()
	env := map[string]string{"API_JWT_SECRET": apiJWTSecret}
	for k, v := range overrides {
		env[k] = v
	}
	return s.start("api", "API_ADDR", env)
}

// start runs `roomcast command` listening on a free port (addrVar).
func (s *stack) start(command, addrVar string, overrides map[string]string) *worker {
	s.t.Helper()
	w := &worker{t: s.t, command: command, addr: freeAddr(s.t), logs: &testsupport.SyncBuffer{}, done: make(chan struct{})}
	env := map[string]string{addrVar: w.addr}
	for k, v := range s.env {
		env[k] = v
	}
	for k, v := range overrides {
		env[k] = v
	}
	w.cmd = exec.Command(s.bin, command)
	w.cmd.Env = environ(env)
	w.cmd.Stdout, w.cmd.Stderr = w.logs, w.logs
	if err := w.cmd.Start(); err != nil {
		s.t.Fatalf("start roomcast %s: %v", command, err)
	}
	go func() {
		w.err = w.cmd.Wait()
		close(w.done)
	}()
	s.t.Cleanup(func() {
		if err := w.shutdown(); err != nil {
			s.t.Errorf("roomcast %s: %v\nlog tail:\n%s", command, err, w.logs.Tail(40))
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

// stop stops the process and fails the test unless it exited 0.
func (w *worker) stop() {
	w.t.Helper()
	if err := w.shutdown(); err != nil {
		w.t.Fatalf("roomcast %s: %v\nlog tail:\n%s", w.command, err, w.logs.Tail(40))
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
			w.t.Fatalf("roomcast %s exited before it was ready: %v\nlog tail:\n%s", w.command, w.err, w.logs.Tail(40))
		default:
		}
		code, body, err := httpGet(w.addr, "/readyz")
		if err == nil && code == 200 {
			return
		}
		last = fmt.Sprintf("%d %s %v", code, strings.TrimSpace(body), err)
		time.Sleep(50 * time.Millisecond)
	}
	w.t.Fatalf("/readyz not 200 within 60s; last answer: %s\nlog tail:\n%s", last, w.logs.Tail(40))
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
	testsupport.WaitFor(s.t, timeout, query, func() (bool, string) {
		n, err := s.count(query, args...)
		return err == nil && n == want, fmt.Sprintf("got %d (%v), want %d", n, err, want)
	})
}
