package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/roomcast/roomcast/config"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"gorm.io/gorm"

	"github.com/roomcast/roomcast/consumers"
	"github.com/roomcast/roomcast/migrations"
	"github.com/roomcast/roomcast/projections"
	"github.com/roomcast/roomcast/publishers"
)

// worker is a running `roomcast run` and what its HTTP endpoints look at.
type worker struct {
	db         *gorm.DB
	migrator   *migrations.Migrator
	consumer   *consumers.Consumer
	dispatcher *publishers.Dispatcher
	probe      *consumers.Probe
	readiness  *readiness
	registry   *prometheus.Registry
	log        *slog.Logger
	addr       string // the address the HTTP server listens on
	listener   net.Listener
}

func (w *worker) listen(addr string) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("HTTP_ADDR %s: %w", addr, err)
	}
	w.addr = ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		_, _ = rw.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", w.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(w.registry, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	srv.Addr = w.addr
	w.listener = ln
	return srv, nil
}

func (w *worker) serve(srv *http.Server) error {
	if err := srv.Serve(w.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	return nil
}

func shutdownHTTP(srv *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}

// ready answers 200 "ready" when the last round of readiness checks found
// nothing wrong, otherwise 503 with one short line per problem. It asks
// nothing of Postgres, Kafka or Pusher itself (see readiness).
func (w *worker) ready(rw http.ResponseWriter, _ *http.Request) {
	problems := w.readiness.snapshot(time.Now())
	rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rw.Header().Set("Cache-Control", "no-store")
	if len(problems) > 0 {
		rw.WriteHeader(http.StatusServiceUnavailable)
		_, _ = rw.Write([]byte(strings.Join(problems, "\n") + "\n"))
		return
	}
	_, _ = rw.Write([]byte("ready\n"))
}

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
