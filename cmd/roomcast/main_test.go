package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomcast/roomcast/config"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/roomcast/roomcast/consumers"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/fakepusher"
	"github.com/roomcast/roomcast/internal/testsupport"
)

func TestMain(m *testing.M) { testsupport.Main(m) }

const (
	testAppID  = "roomcast-test"
	testKey    = "test-key"
	testSecret = "pusher-secret-9d27c1" // must never show up in logs
)

// stack is the real world a worker runs against: an in-process Kafka, a fresh
// Postgres database (migrated), and a fake Pusher HTTP API.
type stack struct {
	t       *testing.T
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

// newStack starts Kafka, a database and fake Pusher and migrates the database up.
func newStack(t *testing.T) *stack {
	t.Helper()
	k := testsupport.Kafka(t, map[string]int32{"chat.events": 12, "chat.events.dlq": 1})
	s := newStackOn(t, k)
	s.migrateUp()
	return s
}

// newStackOn is newStack without migrations, on a given Kafka.
func newStackOn(t *testing.T, k testsupport.KafkaEnv) *stack {
	t.Helper()
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
		t: t, brokers: k.Brokers, topic: k.Topics["chat.events"], dlq: k.Topics["chat.events.dlq"],
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
		// Keep delivered outbox rows, so that tests can count what was
		// written (exactly once per event, across kills and replicas).
		// TestEndToEnd and TestPusherOutage run the default: rows deleted
		// as Pusher accepts them.
		"DELIVERY_RETENTION": "24h",
	}
	t.Cleanup(func() {
		if s.producer != nil {
			_ = s.producer.Close()
		}
	})
	return s
}

func (s *stack) getenv(overrides map[string]string) config.Getenv {
	return func(name string) string {
		if v, ok := overrides[name]; ok {
			return v
		}
		return s.env[name]
	}
}

func (s *stack) migrateUp() {
	s.t.Helper()
	var out bytes.Buffer
	if err := run(s.t.Context(), []string{"migrate", "up"}, s.getenv(nil), nil, &out, io.Discard); err != nil {
		s.t.Fatalf("migrate up: %v\n%s", err, out.String())
	}
}

// ---- the worker, in process ----

type inprocWorker struct {
	t      *testing.T
	addr   string
	cancel context.CancelFunc
	done   chan error
	logs   *testsupport.SyncBuffer
	once   sync.Once
	err    error
}

// startWorker runs `roomcast run` in process on a free port. It is stopped
// (and must return nil) at the end of the test unless stopped before.
func (s *stack) startWorker(overrides map[string]string) *inprocWorker {
	s.t.Helper()
	addr := freeAddr(s.t)
	env := map[string]string{"HTTP_ADDR": addr}
	for k, v := range overrides {
		env[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &inprocWorker{t: s.t, addr: addr, cancel: cancel, done: make(chan error, 1), logs: &testsupport.SyncBuffer{}}
	getenv := s.getenv(env)
	go func() { w.done <- run(ctx, []string{"run"}, getenv, nil, io.Discard, w.logs) }()
	s.t.Cleanup(func() {
		if err := w.shutdown(); err != nil {
			s.t.Errorf("worker: run returned %v\nlog tail:\n%s", err, w.logs.Tail(40))
		}
	})
	return w
}

// shutdown cancels the worker and returns what run returned.
func (w *inprocWorker) shutdown() error {
	w.once.Do(func() {
		w.cancel()
		select {
		case w.err = <-w.done:
		case <-time.After(45 * time.Second):
			w.err = fmt.Errorf("run did not return within 45s of its context ending")
		}
	})
	return w.err
}

// stop stops the worker and fails the test unless run returned nil.
func (w *inprocWorker) stop() {
	w.t.Helper()
	if err := w.shutdown(); err != nil {
		w.t.Fatalf("worker: run returned %v\nlog tail:\n%s", err, w.logs.Tail(40))
	}
}

// waitReady waits until /readyz answers 200.
func (w *inprocWorker) waitReady() {
	w.t.Helper()
	waitHTTPReady(w.t, w.addr, w.done, w.logs)
}

func waitHTTPReady(t *testing.T, addr string, done <-chan error, logs *testsupport.SyncBuffer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("worker exited before it was ready: %v\nlog tail:\n%s", err, logs.Tail(40))
		default:
		}
		code, body, err := httpGet(addr, "/readyz")
		if err == nil && code == 200 {
			return
		}
		last = fmt.Sprintf("%d %s %v", code, strings.TrimSpace(body), err)
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("/readyz not 200 within 30s; last answer: %s\nlog tail:\n%s", last, logs.Tail(40))
}

// ---- Kafka ----

type kmsg struct {
	key   string
	value []byte
}

func eventMsg(e *chattest.Event) kmsg { return kmsg{key: e.Key(), value: e.JSON()} }

// produce sends messages with their keys, partitioned with murmur2 like `emit`.
func (s *stack) produce(msgs ...kmsg) {
	s.t.Helper()
	if err := s.tryProduce(msgs...); err != nil {
		s.t.Fatal(err)
	}
}

func (s *stack) tryProduce(msgs ...kmsg) error {
	s.prodOnce.Do(func() {
		s.producer, s.prodErr = sarama.NewSyncProducer(s.brokers, consumers.KafkaConfig{Brokers: s.brokers}.ProducerConfig())
	})
	if s.prodErr != nil {
		return fmt.Errorf("producer: %w", s.prodErr)
	}
	pms := make([]*sarama.ProducerMessage, len(msgs))
	for i, m := range msgs {
		pms[i] = &sarama.ProducerMessage{Topic: s.topic, Key: sarama.StringEncoder(m.key), Value: sarama.ByteEncoder(m.value)}
	}
	if err := s.producer.SendMessages(pms); err != nil {
		return fmt.Errorf("produce %d messages: %w", len(msgs), err)
	}
	return nil
}

func (s *stack) produceEvents(events ...*chattest.Event) {
	s.t.Helper()
	msgs := make([]kmsg, len(events))
	for i, e := range events {
		msgs[i] = eventMsg(e)
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
		oldest, err := client.GetOffset(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("offset of %s/%d: %v", topic, p, err)
		}
		n += newest - oldest
	}
	return n
}

// readTopic reads want messages from every partition of topic, from the oldest.
func readTopic(t *testing.T, brokers []string, topic string, want int, timeout time.Duration) []*sarama.ConsumerMessage {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Consumer.MaxWaitTime = 20 * time.Millisecond // closing waits for a fetch in flight
	consumer, err := sarama.NewConsumer(brokers, cfg)
	if err != nil {
		t.Fatalf("kafka consumer: %v", err)
	}
	defer func() { _ = consumer.Close() }()
	parts, err := consumer.Partitions(topic)
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	out := make(chan *sarama.ConsumerMessage, want+100)
	for _, p := range parts {
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("consume %s/%d: %v", topic, p, err)
		}
		defer func() { _ = pc.Close() }()
		go func() {
			for m := range pc.Messages() {
				out <- m
			}
		}()
	}
	var got []*sarama.ConsumerMessage
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for len(got) < want {
		select {
		case m := <-out:
			got = append(got, m)
		case <-timer.C:
			t.Fatalf("read %d of %d messages from %s within %v", len(got), want, topic, timeout)
		}
	}
	return got
}

// ---- Postgres ----

func (s *stack) count(query string, args ...any) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n int64
	err := s.db.QueryRow(ctx, query, args...).Scan(&n)
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

// waitCount waits until query returns want.
func (s *stack) waitCount(timeout time.Duration, want int64, query string, args ...any) {
	s.t.Helper()
	testsupport.WaitFor(s.t, timeout, query, func() (bool, string) {
		n, err := s.count(query, args...)
		if err != nil {
			return false, err.Error()
		}
		return n == want, fmt.Sprintf("%d, want %d", n, want)
	})
}

// roomSeqs returns each room's seqs from the events table, in seq order.
func (s *stack) roomSeqs() map[string][]int64 {
	s.t.Helper()
	rows, err := s.db.Query(context.Background(), `SELECT room_id, seq FROM events WHERE seq IS NOT NULL ORDER BY room_id, seq`)
	if err != nil {
		s.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]int64{}
	for rows.Next() {
		var room string
		var seq int64
		if err := rows.Scan(&room, &seq); err != nil {
			s.t.Fatal(err)
		}
		out[room] = append(out[room], seq)
	}
	if err := rows.Err(); err != nil {
		s.t.Fatal(err)
	}
	return out
}

// assertGapFree checks every room's seqs are 1..n where n is want[room].
func assertGapFree(t *testing.T, seqs map[string][]int64, want map[string]int) {
	t.Helper()
	if len(seqs) != len(want) {
		t.Errorf("rooms with seqs: %d, want %d", len(seqs), len(want))
	}
	for room, n := range want {
		got := seqs[room]
		if len(got) != n {
			t.Errorf("room %s: %d seqs, want %d", room, len(got), n)
			continue
		}
		for i, seq := range got {
			if seq != int64(i+1) {
				t.Errorf("room %s: seqs %v are not 1..%d", room, got, n)
				break
			}
		}
	}
}

// ---- Pusher ----

type payload map[string]any

func decodePayload(t *testing.T, e fakepusher.Event) payload {
	t.Helper()
	var p payload
	if err := json.Unmarshal([]byte(e.Data), &p); err != nil {
		t.Fatalf("pusher event %s on %s: data %q is not JSON: %v", e.Name, e.Channel, e.Data, err)
	}
	return p
}

func (p payload) seq() int64 {
	f, _ := p["seq"].(float64)
	return int64(f)
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

// metrics is a scrape of /metrics: series ("name{labels}") to value.
type metrics map[string]float64

func scrape(t *testing.T, addr string) metrics {
	t.Helper()
	code, body, err := httpGet(addr, "/metrics")
	if err != nil || code != 200 {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}
	return parseMetrics(body)
}

func parseMetrics(body string) metrics {
	m := metrics{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m
}

// sum adds the series of metric name whose labels contain every one of labels (`k="v"`).
func (m metrics) sum(name string, labels ...string) float64 {
	var total float64
	for series, v := range m {
		n, rest, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				ok = false
			}
		}
		if ok {
			total += v
		}
	}
	return total
}

func (m metrics) has(name string) bool {
	for series := range m {
		if n, _, _ := strings.Cut(series, "{"); n == name {
			return true
		}
	}
	return false
}

// ---- waiting ----
