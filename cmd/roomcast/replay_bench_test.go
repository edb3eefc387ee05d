package main

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkReplay runs the replay commands as a subprocess (the built
// binary) against Postgres with default durability and an in-process Kafka
// with a 12-partition topic holding REPLAY_BENCH_EVENTS events (default
// 100,000; the mix of BenchmarkIngest over 200 rooms):
//
//   - kafka: `roomcast replay kafka -from earliest` into an empty database
//     (nothing sent to Pusher);
//   - rebuild: `roomcast replay rebuild` of the read models it produced.
//
// REPLAY_BENCH_BATCH sets replay kafka's -batch. Each reports events/s over the command's whole run (process start
// included) and s-per-million-events.
func BenchmarkReplay(b *testing.B) {
	n := 100000
	if v, err := strconv.Atoi(os.Getenv("REPLAY_BENCH_EVENTS")); err == nil && v > 0 {
		n = v
	}
	st := startIngestStack(b)
	topic, dbURL := st.prepare(b, "replay")
	backlog := ingestBacklogFor("replay", n)
	producer := newIngestProducer(b, st.kafka.Brokers())
	for start := 0; start < len(backlog.events); start += 1000 {
		sendIngestMessages(b, producer, ingestMessages(topic, backlog.events[start:min(start+1000, len(backlog.events))]))
	}
	_ = producer.Close()
	env := []string{"KAFKA_BROKERS=" + strings.Join(st.kafka.Brokers(), ","), "KAFKA_TOPIC=" + topic,
		"KAFKA_DLQ_TOPIC=chat.events.dlq", "DATABASE_URL=" + dbURL, "LOG_LEVEL=warn"}
	replay := func(name string, args ...string) {
		b.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, st.bin, args...)
		cmd.Env = env
		start := time.Now()
		out, err := cmd.CombinedOutput()
		elapsed := time.Since(start)
		if err != nil {
			b.Fatalf("roomcast %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		b.Logf("roomcast %s (%v):\n%s", strings.Join(args, " "), elapsed.Round(time.Millisecond), out)
		b.ReportMetric(float64(n)/elapsed.Seconds(), name+"-events/s")
		b.ReportMetric(elapsed.Seconds()*1e6/float64(n), name+"-s/million")
	}
	b.ResetTimer()
	for range b.N {
		args := []string{"replay", "kafka", "-from", "earliest", "-live-group", "-"} // no worker: read to the end
		if v := os.Getenv("REPLAY_BENCH_BATCH"); v != "" {
			args = append(args, "-batch", v)
		}
		replay("kafka", args...)
		replay("rebuild", "replay", "rebuild")
	}
}
