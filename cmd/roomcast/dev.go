package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/roomcast/roomcast/config"

	"github.com/IBM/sarama"

	"github.com/roomcast/roomcast/internal/fakepusher"
	"github.com/roomcast/roomcast/internal/localstack"
	"github.com/roomcast/roomcast/worker"
)

// runDev is `roomcast dev`: the whole flow on one machine with embedded
// defaults. An in-process Kafka on localhost:9092 keeps its data under
// .roomcast/; Postgres is DATABASE_URL or a throwaway cluster under
// .roomcast/; Pusher is the real one when PUSHER_APP_ID, PUSHER_KEY and
// PUSHER_SECRET are set, otherwise a local capture that prints each event.
func runDev(ctx context.Context, args []string, env config.Getenv, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("dir", ".roomcast", "where the dev stack keeps its data")
	kafkaAddr := fs.String("kafka", "localhost:9092", "address of the in-process Kafka broker")
	sample := fs.Bool("sample", true, "send a sample conversation once the worker runs")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: dev: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: dev takes only flags, got %q", errUsage, fs.Args())
	}
	absDir, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(absDir, 0o755); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	logCfg, err := config.Load(env)
	if err != nil {
		return err
	}
	if env("LOG_FORMAT") == "" {
		logCfg.LogFormat = "text"
	}
	if env("LOG_LEVEL") == "" {
		logCfg.LogLevel = slog.LevelWarn
	}
	log := newLogger(logCfg, stderr)
	var out sync.Mutex
	say := func(format string, a ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Fprintf(stdout, format+"\n", a...)
	}

	topic, dlq := envOr(env, "KAFKA_TOPIC", "chat.events"), envOr(env, "KAFKA_DLQ_TOPIC", "chat.events.dlq")
	kafka, err := localstack.StartKafka(localstack.KafkaConfig{
		Addr: *kafkaAddr, DataDir: filepath.Join(absDir, "kafka"),
		Topics: map[string]int32{topic: 12, dlq: 1}, Logger: log,
	})
	if err != nil {
		return fmt.Errorf("dev: start kafka on %s: %w", *kafkaAddr, err)
	}
	defer kafka.Close()

	databaseURL := env("DATABASE_URL")
	if databaseURL == "" {
		say("starting a throwaway Postgres under %s ...", filepath.Join(absDir, "postgres"))
		pg, err := localstack.StartPostgres(ctx, localstack.PostgresConfig{Dir: filepath.Join(absDir, "postgres"), Logger: log})
		if err != nil {
			return fmt.Errorf("dev: start postgres (or set DATABASE_URL): %w", err)
		}
		defer func() { _ = pg.Stop() }()
		databaseURL, err = pg.CreateDatabase(ctx, "roomcast")
		if err != nil && strings.Contains(err.Error(), "already exists") {
			databaseURL, err = pg.URL("roomcast"), nil
		}
		if err != nil {
			return fmt.Errorf("dev: %w", err)
		}
	}
	if err := migrate(ctx, databaseURL, "up", io.Discard); err != nil {
		return fmt.Errorf("dev: %w", err)
	}

	overrides := map[string]string{
		"KAFKA_BROKERS": strings.Join(kafka.Brokers(), ","),
		"DATABASE_URL":  databaseURL,
		"HTTP_ADDR":     envOr(env, "HTTP_ADDR", "127.0.0.1:8080"),
		"LOG_FORMAT":    logCfg.LogFormat,
		"LOG_LEVEL":     logCfg.LogLevel.String(),
	}
	pusherWhere := "Pusher app " + env("PUSHER_APP_ID")
	if env("PUSHER_APP_ID") == "" || env("PUSHER_KEY") == "" || env("PUSHER_SECRET") == "" {
		capture, err := fakepusher.Start(fakepusher.Config{
			AppID: "roomcast-dev", Key: "dev-key", Secret: "dev-secret", Logger: log,
			OnEvent: func(e fakepusher.Event) {
				say("pusher <- %-40s %-16s %s", e.Channel, e.Name, e.Data)
			},
		})
		if err != nil {
			return fmt.Errorf("dev: start local Pusher capture: %w", err)
		}
		defer func() { _ = capture.Close() }()
		overrides["PUSHER_APP_ID"], overrides["PUSHER_KEY"], overrides["PUSHER_SECRET"] = "roomcast-dev", "dev-key", "dev-secret"
		overrides["PUSHER_HOST"], overrides["PUSHER_USE_TLS"], overrides["PUSHER_CLUSTER"] = capture.Host(), "false", ""
		pusherWhere = "a local capture of the Pusher API at " + capture.URL() + " (its events are printed below)"
	}
	cfg, err := config.Load(func(name string) string {
		if v, ok := overrides[name]; ok {
			return v
		}
		return env(name)
	}, config.Kafka, config.Database, config.Pusher, config.HTTP)
	if err != nil {
		return err
	}

	w, err := worker.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		select {
		case <-w.Started():
		case <-runCtx.Done():
			return
		}
		say("")
		say("roomcast dev is running")
		say("  kafka     %s  (topic %s, dead letters %s, data in %s)", strings.Join(kafka.Brokers(), ","), topic, dlq, filepath.Join(absDir, "kafka"))
		say("  postgres  %s", redactURL(databaseURL))
		say("  pusher    %s", pusherWhere)
		say("  metrics   http://%s/metrics   health http://%s/readyz", w.Addr(), w.Addr())
		say("  send more events:  go run ./cmd/roomcast sample | go run ./cmd/roomcast emit -brokers %s", strings.Join(kafka.Brokers(), ","))
		say("  stop with Ctrl-C")
		say("")
		if *sample {
			n, err := produceSample(cfg)
			if err != nil {
				say("sample events: %v", err)
				return
			}
			say("sent a sample conversation of %d events to %s", n, topic)
		}
	}()
	return w.Run(runCtx)
}

func produceSample(cfg config.Config) (int, error) {
	producer, err := sarama.NewSyncProducer(cfg.Kafka.Brokers, cfg.Kafka.ProducerConfig())
	if err != nil {
		return 0, err
	}
	defer func() { _ = producer.Close() }()
	lines := sampleEvents(2, 3, time.Now())
	msgs := make([]*sarama.ProducerMessage, 0, len(lines))
	for _, line := range lines {
		key, err := eventKey([]byte(line), 0, false)
		if err != nil {
			return 0, err
		}
		msgs = append(msgs, &sarama.ProducerMessage{Topic: cfg.Topic, Key: sarama.StringEncoder(key), Value: sarama.StringEncoder(line)})
	}
	return len(msgs), producer.SendMessages(msgs)
}

func envOr(env config.Getenv, name, def string) string {
	if v := env(name); v != "" {
		return v
	}
	return def
}

// redactURL hides a password in a database URL before it is printed.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" {
		return u.Redacted()
	}
	return "(DATABASE_URL)"
}
