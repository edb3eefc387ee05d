package worker

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strings"

	"github.com/IBM/sarama"
	"gorm.io/gorm"

	"github.com/roomcast/roomcast/config"
	"github.com/roomcast/roomcast/consumers"
	"github.com/roomcast/roomcast/migrations"
	"github.com/roomcast/roomcast/projections"
	"github.com/roomcast/roomcast/publishers"
)

// newWorkerReadiness is the checker of `roomcast run`: Postgres answers and
// its migrations are current, Kafka answers and knows the topic, the
// consumer runs, and whatever the consumer and the dispatcher report as
// stalled or refused (their Problems).
func newWorkerReadiness(cfg config.Config, log *slog.Logger, db *gorm.DB, migrator *migrations.Migrator,
	probe *consumers.Probe, consumer *consumers.Consumer, dispatcher *publishers.Dispatcher) *readiness {
	postgres := &readinessCheck{name: "postgres", probe: func(ctx context.Context) (string, error) {
		if err := projections.Ping(ctx, db); err != nil {
			return "unreachable", err
		}
		return "", nil
	}}
	schema := &readinessCheck{name: "migrations", after: postgres, probe: func(ctx context.Context) (string, error) {
		switch err := migrator.Check(ctx); {
		case err == nil:
			return "", nil
		case errors.Is(err, migrations.ErrBehind):
			return "behind this roomcast's (run `roomcast migrate up`)", err
		default:
			return "version unreadable", err
		}
	}}
	kafka := &readinessCheck{name: "kafka", probe: func(ctx context.Context) (string, error) {
		switch err := probe.Check(ctx); {
		case err == nil:
			return "", nil
		case errors.Is(err, sarama.ErrUnknownTopicOrPartition):
			return "topic " + cfg.Topic + " not found", err
		default:
			return "unreachable", err
		}
	}}
	running := &readinessCheck{name: "consumer", probe: func(context.Context) (string, error) {
		if !consumer.IsRunning() {
			return "not running", nil
		}
		return "", nil
	}}
	// The dispatcher's Problems say at once when Pusher refuses the
	// credentials, and when its calls have failed for STALL_AFTER.
	return newReadiness(log.With(slog.String("component", "readiness")), secretsOf(cfg),
		[]problemSource{consumer, dispatcher}, postgres, schema, kafka, running)
}

// secretsOf lists what must never reach a log line: the database URL and
// its password (raw and URL-encoded), the Kafka SASL password, the Pusher
// secret.
func secretsOf(cfg config.Config) []string {
	out := []string{cfg.DatabaseURL, cfg.Kafka.SASLPassword, cfg.Pusher.Secret}
	if u, err := url.Parse(cfg.DatabaseURL); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok {
			out = append(out, pw, url.QueryEscape(pw), url.PathEscape(pw))
		}
	}
	for _, kv := range strings.Fields(cfg.DatabaseURL) { // key=value form
		if v, ok := strings.CutPrefix(kv, "password="); ok {
			out = append(out, strings.Trim(v, `'`))
		}
	}
	var nonEmpty []string
	for _, s := range out {
		if len(s) >= 3 { // a one- or two-character secret would blank ordinary words
			nonEmpty = append(nonEmpty, s)
		}
	}
	return nonEmpty
}
