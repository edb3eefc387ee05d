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

// ready answers 200 when Kafka and Postgres answer, the schema is current,
// the consumer runs and Pusher accepts roomcast's credentials; otherwise 503
// with one line per problem.
func (w *worker) ready(rw http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	var problems []string
	if err := projections.Ping(ctx, w.db); err != nil {
		problems = append(problems, "postgres: "+err.Error())
	} else if err := w.migrator.Check(ctx); err != nil {
		problems = append(problems, "migrations: "+err.Error())
	}
	if err := w.probe.Check(ctx); err != nil {
		problems = append(problems, "kafka: "+err.Error())
	}
	if !w.consumer.IsRunning() {
		problems = append(problems, "consumer: not running")
	}
	if err := w.dispatcher.Degraded(); err != nil {
		problems = append(problems, "pusher: "+err.Error())
	}
	if len(problems) > 0 {
		rw.WriteHeader(http.StatusServiceUnavailable)
		_, _ = rw.Write([]byte(strings.Join(problems, "\n") + "\n"))
		return
	}
	_, _ = rw.Write([]byte("ready\n"))
}
