package worker

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/roomcast/roomcast/consumers"
	"github.com/roomcast/roomcast/projections"
	"github.com/roomcast/roomcast/publishers"
)

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// assemble builds the pipeline from its end (the dispatcher) to its start
// (the consumer), then the readiness checker and the HTTP server.
func (w *Worker) assemble() error {
	w.buildDelivery()
	if err := w.buildIntake(); err != nil {
		return err
	}
	w.readiness = newWorkerReadiness(w.cfg, w.log, w.db, w.migrator, w.probe, w.consumer, w.dispatcher)
	srv, err := w.listen(w.cfg.HTTPAddr)
	if err != nil {
		return err
	}
	w.srv = srv
	return nil
}

// buildDelivery builds the projector, the outbox and the dispatcher, hands
// the projector's deliveries to the dispatcher, and exports the backlog.
func (w *Worker) buildDelivery() {
	cfg, log, reg := w.cfg, w.log, w.registry
	w.projector = projections.NewProjector(w.db, log, reg)
	w.projector.TerminateConnectionsOnLeave(cfg.TerminateOnLeave)
	w.outbox = projections.NewOutbox(w.db)
	if cfg.Retention != 0 {
		w.outbox.KeepDelivered()
	}
	w.dispatcher = publishers.NewDispatcher(w.outbox, publishers.NewClient(cfg.Pusher), publishers.DispatcherConfig{
		MaxInFlight: cfg.MaxInFlight, BatchEvents: cfg.BatchEvents, Retention: cfg.Retention, StallAfter: cfg.StallAfter,
		Logger: log.With(slog.String("component", "dispatcher")), Registerer: reg,
	})
	// A batch's deliveries go straight to this process's dispatcher when it
	// leads (it then need not read them back). After any other commit that
	// owes deliveries: wake this process's dispatcher, and when another
	// process leads, tell it through Postgres (coalesced).
	w.projector.HandOffDeliveries(w.dispatcher.Handoff)
	w.notify = make(chan struct{}, 1)
	w.projector.OnDeliveriesOwed(func() {
		w.dispatcher.Wake()
		if !w.outbox.Leading() {
			select {
			case w.notify <- struct{}{}:
			default:
			}
		}
	})
	w.backlog = registerBacklog(reg, w.outbox, log.With(slog.String("component", "backlog")))
}

// buildIntake builds the batcher in front of the projector, the Kafka
// consumer in front of the batcher, and the probe readiness asks Kafka with.
func (w *Worker) buildIntake() error {
	cfg, log, reg := w.cfg, w.log, w.registry
	w.batcher = consumers.NewBatcher(w.projector, consumers.BatcherConfig{
		MaxBatch: cfg.BatchMax, Concurrency: cfg.BatchConcurrency, Timeout: cfg.ProjectionTimeout, Registerer: reg,
	})
	consumer, err := consumers.New(consumers.Config{
		Kafka: cfg.Kafka, Topic: cfg.Topic, DLQTopic: cfg.DLQTopic, ConsumerGroup: cfg.ConsumerGroup,
		InitialOffset: cfg.InitialOffset, MaxInFlightPerPartition: cfg.InFlightPerPartition, MaxInFlight: cfg.InFlight,
		MaxInFlightPerKey: cfg.InFlightPerKey, CatchUpRatio: cfg.CatchUpRatio,
		MaxEventBytes: cfg.EventMaxBytes, StallAfter: cfg.StallAfter,
		MaxInFlightBytes: cfg.InFlightBytes, GroupInstanceID: cfg.GroupInstanceID,
		Logger: log.With(slog.String("component", "consumer")), Registerer: reg,
	}, w.batcher)
	if err != nil {
		return err
	}
	w.consumer = consumer
	w.probe = consumers.NewProbe(cfg.Kafka, cfg.Topic)
	return nil
}

// start runs every component in g until ctx ends, and returns what stops
// the batcher: it stops after the consumer, so that handlers in flight get
// their answers.
func (w *Worker) start(ctx context.Context, g *errgroup.Group) (stopBatcher context.CancelFunc) {
	batchCtx, stopBatcher := context.WithCancel(context.WithoutCancel(ctx))
	g.Go(func() error { return w.batcher.Run(batchCtx) })
	g.Go(func() error {
		defer stopBatcher()
		return w.consumer.Run(ctx)
	})
	g.Go(func() error { return w.dispatcher.Run(ctx) })
	g.Go(func() error { w.backlog.run(ctx); return nil })
	g.Go(func() error { w.announceOwed(ctx); return nil })
	g.Go(func() error {
		// Commits of other replicas wake this one's dispatcher when it leads.
		return w.outbox.Listen(ctx, w.dispatcher.Wake, func(err error) {
			w.log.Warn("outbox notifications: reconnecting", slog.Any("error", err))
		})
	})
	g.Go(func() error { return w.serve(w.srv) })
	g.Go(func() error { return w.readiness.run(ctx, w.consumer.Running()) })
	go func() {
		select {
		case <-w.consumer.Running():
			close(w.started)
		case <-ctx.Done():
		}
	}()
	return stopBatcher
}

// announceOwed tells the leading replica through Postgres, until ctx ends,
// that this process committed deliveries it does not dispatch itself.
func (w *Worker) announceOwed(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.notify:
			if err := w.outbox.Notify(ctx); err != nil && ctx.Err() == nil {
				w.log.Warn("announce deliveries to the leading replica", slog.Any("error", err))
			}
		}
	}
}
