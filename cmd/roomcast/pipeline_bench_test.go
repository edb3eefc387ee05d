package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/config"

	"github.com/IBM/sarama"

	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/fakepusher"
	"github.com/roomcast/roomcast/internal/localstack"
	"github.com/roomcast/roomcast/projections"
)

// BenchmarkPipeline measures roomcast end to end on this machine: a backlog
// of message.created events over 200 rooms in a 12-partition topic, then
// `roomcast run` until every event is in Postgres (default durability: fsync
// and synchronous_commit on) and delivered to the Pusher fake. It reports
// events/s and Pusher calls per event.
func BenchmarkPipeline(b *testing.B) {
	const events, rooms = 20000, 200
	ctx := context.Background()
	pg, err := localstack.StartPostgres(ctx, localstack.PostgresConfig{})
	if err != nil {
		b.Fatalf("postgres: %v", err)
	}
	b.Cleanup(func() { _ = pg.Stop() })
	kafka, err := localstack.StartKafka(localstack.KafkaConfig{Topics: map[string]int32{"chat.events": 12, "chat.events.dlq": 1}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(kafka.Close)
	pusher, err := fakepusher.Start(fakepusher.Config{AppID: "bench", Key: "bench-key", Secret: "bench-secret"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = pusher.Close() })

	for i := 0; i < b.N; i++ {
		dbURL, err := pg.CreateDatabase(ctx, fmt.Sprintf("bench_%d_%d", time.Now().UnixNano(), i))
		if err != nil {
			b.Fatal(err)
		}
		if err := migrate(ctx, dbURL, "up", io.Discard); err != nil {
			b.Fatal(err)
		}
		topic := fmt.Sprintf("chat.events.%d.%d", time.Now().UnixNano(), i)
		admin, err := sarama.NewClusterAdmin(kafka.Brokers(), sarama.NewConfig())
		if err != nil {
			b.Fatal(err)
		}
		if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 12, ReplicationFactor: 1}, false); err != nil {
			b.Fatal(err)
		}
		_ = admin.Close()
		produceBacklog(b, kafka.Brokers(), topic, events, rooms)
		pusher.Reset()

		env := map[string]string{
			"KAFKA_BROKERS": strings.Join(kafka.Brokers(), ","), "KAFKA_TOPIC": topic,
			"KAFKA_CONSUMER_GROUP": topic, "DATABASE_URL": dbURL,
			"PUSHER_APP_ID": "bench", "PUSHER_KEY": "bench-key", "PUSHER_SECRET": "bench-secret",
			"PUSHER_HOST": pusher.Host(), "PUSHER_USE_TLS": "false", "HTTP_ADDR": "127.0.0.1:0",
		}
		cfg, err := config.Load(func(k string) string { return env[k] }, config.Kafka, config.Database, config.Pusher, config.HTTP)
		if err != nil {
			b.Fatal(err)
		}
		db, err := projections.Open(ctx, dbURL, 2)
		if err != nil {
			b.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- runWorker(runCtx, cfg, slog.New(slog.DiscardHandler)) }()
		waitCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		if err := pusher.WaitForEvents(waitCtx, events); err != nil {
			b.Fatalf("delivered %d of %d: %v", len(pusher.Events()), events, err)
		}
		cancel()
		elapsed := time.Since(start)
		var projected int64
		db.Table("events").Count(&projected)
		_ = projections.Close(db)
		stop()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		if projected != events {
			b.Fatalf("projected %d of %d", projected, events)
		}
		b.ReportMetric(float64(events)/elapsed.Seconds(), "events/s")
		b.ReportMetric(float64(len(pusher.Calls()))/float64(events), "pusher-calls/event")
	}
}

func produceBacklog(b *testing.B, brokers []string, topic string, events, rooms int) {
	b.Helper()
	producer := newIngestProducer(b, brokers)
	defer producer.Close()
	batch := make([]*sarama.ProducerMessage, 0, 1000)
	for i := range events {
		room := fmt.Sprintf("room-%d", i%rooms)
		e := chattest.MessageCreated(room, fmt.Sprintf("m-%d", i), "hello <3 from the benchmark")
		batch = append(batch, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(room), Value: sarama.ByteEncoder(e.JSON())})
		if len(batch) == cap(batch) {
			if err := producer.SendMessages(batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		if err := producer.SendMessages(batch); err != nil {
			b.Fatal(err)
		}
	}
}
