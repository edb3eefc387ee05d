package consumers_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/roomcast/roomcast/consumers"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/projections"
)

// Helpers for the tests that run the consumer as the worker wires it, on a
// real Postgres and an in-process Kafka, and look at what an operator sees:
// the dead-letter topic, the metrics, Problems (/readyz) and the log.

// logBuffer is a log destination the test can read while the consumer writes.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// tail returns the last n lines.
func (b *logBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	lines := strings.SplitAfter(b.buf.String(), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "")
}

// lines returns the lines logged at level (slog's text format: "level=WARN").
func (b *logBuffer) lines(level string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for line := range strings.Lines(b.buf.String()) {
		if strings.Contains(line, " level="+level+" ") {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}

// consumerNode is a consumer (with its batcher and projector) on env's
// database and topics, with its own registry and log.
type consumerNode struct {
	*batchNode // its metric helper
	consumer   *consumers.Consumer
	logs       *logBuffer
	t          *testing.T
}

// startConsumer runs a consumer until the test ends; tweak adjusts its configuration.
func (e *batchEnv) startConsumer(projector func(consumers.Projector) consumers.Projector, tweak func(*consumers.Config)) *consumerNode {
	t := e.t
	t.Helper()
	n := &consumerNode{batchNode: &batchNode{name: "worker", reg: prometheus.NewRegistry()}, logs: &logBuffer{}, t: t}
	log := slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	db, err := projections.Open(t.Context(), e.dbURL, 8)
	if err != nil {
		t.Fatal(err)
	}
	batcher := consumers.NewBatcher(projections.NewProjector(db, log, n.reg), consumers.BatcherConfig{MaxBatch: 500, Registerer: n.reg})
	var p consumers.Projector = batcher
	if projector != nil {
		p = projector(batcher)
	}
	cfg := consumers.Config{
		Kafka: consumers.KafkaConfig{Brokers: e.brokers}, Topic: e.topic, DLQTopic: e.dlq, ConsumerGroup: e.group,
		MaxInFlightPerKey: batchPerKey, Logger: log, Registerer: n.reg,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := consumers.New(cfg, p)
	if err != nil {
		_ = projections.Close(db)
		t.Fatal(err)
	}
	n.consumer = c
	batchCtx, stopBatch := context.WithCancel(context.Background())
	ctx, stop := context.WithCancel(context.Background())
	batched, consumed := make(chan error, 1), make(chan error, 1)
	go func() { batched <- batcher.Run(batchCtx) }()
	go func() { consumed <- c.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-consumed; err != nil {
			t.Errorf("consumer stopped with %v", err)
		}
		stopBatch()
		<-batched
		_ = projections.Close(db)
		if t.Failed() {
			t.Logf("consumer log, last lines:\n%s", n.logs.tail(60))
		}
	})
	return n
}

// problems are the consumer's Problems lines.
func (n *consumerNode) problems() []string {
	p, ok := any(n.consumer).(interface{ Problems() []string })
	if !ok {
		n.t.Fatal("consumers.Consumer has no Problems method")
	}
	return p.Problems()
}

// roomEvents counts the events of room in the events table.
func (e *batchEnv) roomEvents(room string) int {
	var n int64
	if err := e.db.Raw(`SELECT count(*) FROM events WHERE data->>'roomId' = ?`, room).Scan(&n).Error; err != nil {
		e.t.Fatal(err)
	}
	return int(n)
}

// dlqMessages reads the dead-letter topic (one partition) up to its high-water mark.
func (e *batchEnv) dlqMessages() []*sarama.ConsumerMessage {
	return e.readTopic(e.dlq)[0]
}

// someRooms are valid events of a few rooms, in order, with the count per room.
func someRooms(rooms []string, perRoom int) ([]batchRecord, map[string]int) {
	var records []batchRecord
	count := map[string]int{}
	for i := range perRoom {
		for _, room := range rooms {
			records = append(records, eventRecord(chattest.MessageCreated(room, fmt.Sprintf("%s.m%d", room, i), "hello")))
			count[room]++
		}
	}
	return records, count
}
