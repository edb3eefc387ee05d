// Command roomcast-dev runs roomcast's whole flow on one machine with
// embedded defaults: an in-process Kafka, a throwaway Postgres, a local
// capture of the Pusher API, the worker and the API. `make run` runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/roomcast/roomcast/api"
	"github.com/roomcast/roomcast/config"
	"github.com/roomcast/roomcast/internal/feed"
	"github.com/roomcast/roomcast/worker"
)

const usage = `roomcast-dev: everything on one machine: in-process Kafka, throwaway Postgres, local Pusher capture

Usage:
  roomcast-dev [-dir .roomcast] [-kafka localhost:9092] [-sample=true]

  -dir DIR       where the dev stack keeps its data (default .roomcast)
  -kafka ADDR    address of the in-process Kafka broker (default localhost:9092)
  -sample=false  do not send a sample conversation once the worker runs

Postgres is DATABASE_URL, or a throwaway cluster under DIR; Pusher is the real
one when PUSHER_APP_ID, PUSHER_KEY and PUSHER_SECRET are set, otherwise a local
capture that prints each event. The API (roomcast api) listens on API_ADDR
(default 127.0.0.1:8081); unless an identity is configured, it takes the user
id from the X-Roomcast-User header without any check: dev only. Other
configuration comes from the environment; see README.md.
`

// errUsage marks a command line roomcast-dev does not understand (exit status 2).
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	worker.TuneGC(os.Getenv)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		fmt.Fprintf(os.Stderr, "roomcast-dev: %v\n\n%s", err, usage)
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "roomcast-dev: %v\n", err)
		os.Exit(1)
	}
}

// run is the dev stack: it starts Kafka, Postgres and the Pusher capture,
// then the worker and the API on them, until ctx ends.
func run(ctx context.Context, args []string, env config.Getenv, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("roomcast-dev", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("dir", ".roomcast", "where the dev stack keeps its data")
	kafkaAddr := fs.String("kafka", "localhost:9092", "address of the in-process Kafka broker")
	sample := fs.Bool("sample", true, "send a sample conversation once the worker runs")
	switch err := fs.Parse(args); {
	case errors.Is(err, flag.ErrHelp) || len(args) > 0 && args[0] == "help":
		_, err = io.WriteString(stdout, usage)
		return err
	case err != nil:
		return fmt.Errorf("%w: %v", errUsage, err)
	case fs.NArg() > 0:
		return fmt.Errorf("%w: roomcast-dev takes only flags, got %q", errUsage, fs.Args())
	}
	absDir, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(absDir, 0o755); err != nil {
		return err
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
	log := logCfg.Logger(stderr)
	var out sync.Mutex
	say := func(format string, a ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Fprintf(stdout, format+"\n", a...)
	}

	s := &stack{dir: absDir, env: env, log: log, say: say}
	defer s.close()
	cfg, err := s.start(ctx, *kafkaAddr, logCfg)
	if err != nil {
		return err
	}
	apiSvc, err := api.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	w, err := worker.New(ctx, cfg, log)
	if err != nil {
		apiSvc.Close()
		return err
	}
	g, runCtx := errgroup.WithContext(ctx)
	go func() {
		select {
		case <-w.Started():
		case <-runCtx.Done():
			return
		}
		s.announce(w.Addr(), apiSvc.Addr())
		if *sample {
			n, err := produceSample(cfg)
			if err != nil {
				say("sample events: %v", err)
				return
			}
			say("sent a sample conversation of %d events to %s", n, cfg.Topic)
		}
	}()
	g.Go(func() error { return w.Run(runCtx) })
	g.Go(func() error { return apiSvc.Run(runCtx) })
	return g.Wait()
}

// announce prints where the stack's parts are, once the worker runs.
func (s *stack) announce(workerAddr, apiAddr string) {
	brokers := strings.Join(s.kafka.Brokers(), ",")
	s.say("")
	s.say("roomcast dev is running")
	s.say("  kafka     %s  (topic %s, dead letters %s, data in %s)", brokers, s.topic, s.dlq, filepath.Join(s.dir, "kafka"))
	s.say("  postgres  %s", redactURL(s.databaseURL))
	s.say("  pusher    %s", s.pusherWhere)
	s.say("  metrics   http://%s/metrics   health http://%s/readyz", workerAddr, workerAddr)
	s.say("  api       http://%s  (POST /pusher/auth, metrics /metrics, health /readyz)", apiAddr)
	if s.devIdentity != "" {
		s.say("            DEV ONLY identity: the API trusts the %s header as the user id, unchecked:", s.devIdentity)
		s.say("            curl -H '%s: u-1' -d socket_id=1.2 -d channel_name=private-user-u-1 http://%s/pusher/auth", s.devIdentity, apiAddr)
	}
	s.say("  send more events:  go run ./cmd/roomcast sample | go run ./cmd/roomcast emit -brokers %s", brokers)
	s.say("  stop with Ctrl-C")
	s.say("")
}

// produceSample sends a sample conversation to cfg.Topic and returns how
// many events it holds.
func produceSample(cfg config.Config) (int, error) {
	producer, err := feed.NewProducer(cfg.Kafka, cfg.Topic)
	if err != nil {
		return 0, err
	}
	defer func() { _ = producer.Close() }()
	for _, line := range feed.Sample(2, 3, time.Now()) {
		key, err := feed.Key([]byte(line), 0, false)
		if err != nil {
			return 0, err
		}
		if err := producer.Add(key, []byte(line)); err != nil {
			return 0, err
		}
	}
	if err := producer.Flush(); err != nil {
		return 0, err
	}
	return producer.Sent(), nil
}
