// Package worker runs roomcast's pipeline (consumer -> batcher -> projector
// -> outbox -> dispatcher), serves its health, readiness and metrics, and
// stops it in order.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"gorm.io/gorm"

	"github.com/roomcast/roomcast/config"
	"github.com/roomcast/roomcast/consumers"
	"github.com/roomcast/roomcast/migrations"
	"github.com/roomcast/roomcast/projections"
	"github.com/roomcast/roomcast/publishers"
)

// Worker is `roomcast run`: the pipeline New assembles, which Run runs, and
// what its HTTP endpoints look at.
type Worker struct {
	cfg config.Config
	log *slog.Logger

	db         *gorm.DB
	migrator   *migrations.Migrator
	projector  *projections.Projector
	outbox     *projections.Outbox
	dispatcher *publishers.Dispatcher
	notify     chan struct{} // deliveries owed, to announce to the leading replica (coalesced)
	backlog    *backlogGauges
	batcher    *consumers.Batcher
	consumer   *consumers.Consumer
	probe      *consumers.Probe
	readiness  *readiness
	registry   *prometheus.Registry

	srv      *http.Server
	addr     string // the address the HTTP server listens on
	listener net.Listener
	started  chan struct{} // closed once the worker serves and its consumer runs
}

// New checks the schema and assembles the worker: it opens the database,
// builds the pipeline and listens on cfg.HTTPAddr. Run must follow: it
// releases what New took.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (*Worker, error) {
	log.Info("roomcast starting", slog.Any("brokers", cfg.Kafka.Brokers), slog.String("topic", cfg.Topic),
		slog.String("group", cfg.ConsumerGroup), slog.String("http_addr", cfg.HTTPAddr))
	db, migrator, err := projections.OpenChecked(ctx, cfg.DatabaseURL, cfg.DatabaseMaxConns)
	if err != nil {
		return nil, err
	}
	w := &Worker{cfg: cfg, log: log, db: db, migrator: migrator, registry: newRegistry(), started: make(chan struct{})}
	if err := w.assemble(); err != nil {
		w.close()
		return nil, err
	}
	log.Info("serving health, readiness and metrics", slog.String("addr", w.addr))
	return w, nil
}

// Addr is the address the worker's HTTP server listens on (HTTP_ADDR with
// the port the system chose for :0).
func (w *Worker) Addr() string { return w.addr }

// Started is closed once the worker serves and its consumer runs (never if
// Run fails first).
func (w *Worker) Started() <-chan struct{} { return w.started }

// Run consumes, projects and fans out until ctx ends, then stops within
// cfg.ShutdownTimeout: the consumer first finishes its event in flight and
// commits offsets, the dispatcher settles its call in flight.
func (w *Worker) Run(ctx context.Context) error {
	defer w.close()
	// The components stop on runCtx, not on ctx: see stop.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	g, gctx := errgroup.WithContext(runCtx)
	stopBatcher := w.start(gctx, g)
	defer stopBatcher()
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()

	select {
	case err := <-done:
		// A component failed on its own.
		shutdownHTTP(w.srv)
		return err
	case <-ctx.Done():
	}
	return w.stop(cancel, done)
}

// stop ends the components (cancel) once Run's context ended, and waits for
// them (done) at most cfg.ShutdownTimeout.
func (w *Worker) stop(cancel context.CancelFunc, done <-chan error) error {
	w.log.Info("roomcast stopping: finishing the work in flight", slog.Duration("timeout", w.cfg.ShutdownTimeout))
	cancel()
	shutdownHTTP(w.srv)
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		w.log.Info("roomcast stopped")
		return nil
	case <-time.After(w.cfg.ShutdownTimeout):
		return fmt.Errorf("shutdown took longer than SHUTDOWN_TIMEOUT (%s)", w.cfg.ShutdownTimeout)
	}
}

// close releases the Kafka probe and the database.
func (w *Worker) close() {
	if w.probe != nil {
		w.probe.Close()
	}
	_ = projections.Close(w.db)
}
