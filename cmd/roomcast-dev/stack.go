package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/roomcast/roomcast/config"
	"github.com/roomcast/roomcast/internal/fakepusher"
	"github.com/roomcast/roomcast/internal/localstack"
	"github.com/roomcast/roomcast/projections"
)

// stack is what the worker runs against in dev: an in-process Kafka that
// keeps its data under dir; Postgres, DATABASE_URL or a throwaway cluster
// under dir; Pusher, the real one when PUSHER_APP_ID, PUSHER_KEY and
// PUSHER_SECRET are set, otherwise a local capture that prints each event.
type stack struct {
	dir string
	env config.Getenv
	log *slog.Logger
	say func(format string, a ...any)

	topic, dlq  string
	kafka       *localstack.Kafka
	databaseURL string
	pusherWhere string
	devIdentity string // the header the dev API trusts ("" when the environment configures an identity)
	closers     []func()
}

// DevUserHeader is the header the dev stack's API takes the user id from
// when the environment configures no identity. It trusts any caller: dev
// only, never in front of users.
const DevUserHeader = "X-Roomcast-User"

// start starts the stack's parts and returns the worker's configuration on
// them (with logCfg's logging).
func (s *stack) start(ctx context.Context, kafkaAddr string, logCfg config.Config) (config.Config, error) {
	if err := s.startKafka(kafkaAddr); err != nil {
		return config.Config{}, err
	}
	if err := s.startPostgres(ctx); err != nil {
		return config.Config{}, err
	}
	overrides := map[string]string{
		"KAFKA_BROKERS": strings.Join(s.kafka.Brokers(), ","),
		"DATABASE_URL":  s.databaseURL,
		"HTTP_ADDR":     envOr(s.env, "HTTP_ADDR", "127.0.0.1:8080"),
		"LOG_FORMAT":    logCfg.LogFormat,
		"LOG_LEVEL":     logCfg.LogLevel.String(),
	}
	if err := s.startPusher(overrides); err != nil {
		return config.Config{}, err
	}
	s.configureAPI(overrides)
	return config.Load(func(name string) string {
		if v, ok := overrides[name]; ok {
			return v
		}
		return s.env(name)
	}, config.Kafka, config.Database, config.Pusher, config.HTTP, config.API)
}

// configureAPI points the API at 127.0.0.1:8081 (unless API_ADDR) and,
// unless the environment names an identity mode, has it trust
// DevUserHeader, so that a browser or curl on this machine can call it.
func (s *stack) configureAPI(overrides map[string]string) {
	overrides["API_ADDR"] = envOr(s.env, "API_ADDR", "127.0.0.1:8081")
	for _, name := range []string{"API_JWKS_URL", "API_JWT_SECRET", "API_TRUSTED_USER_HEADER"} {
		if s.env(name) != "" {
			return
		}
	}
	overrides["API_TRUSTED_USER_HEADER"] = DevUserHeader
	s.devIdentity = DevUserHeader
}

// close stops what start started, the last first.
func (s *stack) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

func (s *stack) startKafka(addr string) error {
	s.topic, s.dlq = envOr(s.env, "KAFKA_TOPIC", "chat.events"), envOr(s.env, "KAFKA_DLQ_TOPIC", "chat.events.dlq")
	kafka, err := localstack.StartKafka(localstack.KafkaConfig{
		Addr: addr, DataDir: filepath.Join(s.dir, "kafka"),
		Topics: map[string]int32{s.topic: 12, s.dlq: 1}, Logger: s.log,
	})
	if err != nil {
		return fmt.Errorf("start kafka on %s: %w", addr, err)
	}
	s.kafka = kafka
	s.closers = append(s.closers, kafka.Close)
	return nil
}

// startPostgres starts a throwaway Postgres unless DATABASE_URL is set, and
// migrates the database up.
func (s *stack) startPostgres(ctx context.Context) error {
	s.databaseURL = s.env("DATABASE_URL")
	if s.databaseURL == "" {
		s.say("starting a throwaway Postgres under %s ...", filepath.Join(s.dir, "postgres"))
		pg, err := localstack.StartPostgres(ctx, localstack.PostgresConfig{Dir: filepath.Join(s.dir, "postgres"), Logger: s.log})
		if err != nil {
			return fmt.Errorf("start postgres (or set DATABASE_URL): %w", err)
		}
		s.closers = append(s.closers, func() { _ = pg.Stop() })
		s.databaseURL, err = pg.CreateDatabase(ctx, "roomcast")
		if err != nil && strings.Contains(err.Error(), "already exists") {
			s.databaseURL, err = pg.URL("roomcast"), nil
		}
		if err != nil {
			return err
		}
	}
	return migrateUp(ctx, s.databaseURL)
}

// startPusher starts the local capture of the Pusher API unless the
// environment names a Pusher app, and points overrides at it.
func (s *stack) startPusher(overrides map[string]string) error {
	s.pusherWhere = "Pusher app " + s.env("PUSHER_APP_ID")
	if s.env("PUSHER_APP_ID") != "" && s.env("PUSHER_KEY") != "" && s.env("PUSHER_SECRET") != "" {
		return nil
	}
	capture, err := fakepusher.Start(fakepusher.Config{
		AppID: "roomcast-dev", Key: "dev-key", Secret: "dev-secret", Logger: s.log,
		OnEvent: func(e fakepusher.Event) {
			s.say("pusher <- %-40s %-16s %s", e.Channel, e.Name, e.Data)
		},
	})
	if err != nil {
		return fmt.Errorf("start local Pusher capture: %w", err)
	}
	s.closers = append(s.closers, func() { _ = capture.Close() })
	overrides["PUSHER_APP_ID"], overrides["PUSHER_KEY"], overrides["PUSHER_SECRET"] = "roomcast-dev", "dev-key", "dev-secret"
	overrides["PUSHER_HOST"], overrides["PUSHER_USE_TLS"], overrides["PUSHER_CLUSTER"] = capture.Host(), "false", ""
	s.pusherWhere = "a local capture of the Pusher API at " + capture.URL() + " (its events are printed below)"
	return nil
}

// migrateUp applies roomcast's migrations to the database at databaseURL.
func migrateUp(ctx context.Context, databaseURL string) error {
	db, m, err := projections.OpenForMigrations(ctx, databaseURL)
	if err != nil {
		return err
	}
	defer func() { _ = projections.Close(db) }()
	_, err = m.Up(ctx)
	return err
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
