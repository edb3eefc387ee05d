package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/roomcast/roomcast/config"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/roomcast/roomcast/consumers"
	"github.com/roomcast/roomcast/projections"
	"github.com/roomcast/roomcast/publishers"
)

// runWorker is `roomcast run`: it checks the schema, then consumes, projects
// and fans out until ctx ends, and stops within cfg.ShutdownTimeout.
func runWorker(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	return runWorkerWith(ctx, cfg, log, nil)
}

// runWorkerWith is runWorker with a hook called once the worker serves (tests, dev).
func runWorkerWith(ctx context.Context, cfg config.Config, log *slog.Logger, started func(*worker)) error {
	log.Info("roomcast starting", slog.Any("brokers", cfg.Kafka.Brokers), slog.String("topic", cfg.Topic),
		slog.String("group", cfg.ConsumerGroup), slog.String("http_addr", cfg.HTTPAddr))
	db, migrator, err := projections.OpenChecked(ctx, cfg.DatabaseURL, cfg.DatabaseMaxConns)
	if err != nil {
		return err
	}
	defer func() { _ = projections.Close(db) }()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	projector := projections.NewProjector(db, log, reg)
	outbox := projections.NewOutbox(db)
	if cfg.Retention != 0 {
		outbox.KeepDelivered()
	}
	dispatcher := publishers.NewDispatcher(outbox, publishers.NewClient(cfg.Pusher), publishers.DispatcherConfig{
		MaxInFlight: cfg.MaxInFlight, BatchEvents: cfg.BatchEvents, Retention: cfg.Retention, StallAfter: cfg.StallAfter,
		Logger: log.With(slog.String("component", "dispatcher")), Registerer: reg,
	})
	// A batch's deliveries go straight to this process's dispatcher when it
	// leads (it then need not read them back). After any other commit that
	// owes deliveries: wake this process's dispatcher, and when another
	// process leads, tell it through Postgres (coalesced).
	projector.HandOffDeliveries(dispatcher.Handoff)
	notify := make(chan struct{}, 1)
	projector.OnDeliveriesOwed(func() {
		dispatcher.Wake()
		if !outbox.Leading() {
			select {
			case notify <- struct{}{}:
			default:
			}
		}
	})
	backlog := registerBacklog(reg, outbox, log.With(slog.String("component", "backlog")))

	batcher := consumers.NewBatcher(projector, consumers.BatcherConfig{
		MaxBatch: cfg.BatchMax, Concurrency: cfg.BatchConcurrency, Timeout: cfg.ProjectionTimeout, Registerer: reg,
	})
	consumer, err := consumers.New(consumers.Config{
		Kafka: cfg.Kafka, Topic: cfg.Topic, DLQTopic: cfg.DLQTopic, ConsumerGroup: cfg.ConsumerGroup,
		InitialOffset: cfg.InitialOffset, MaxInFlightPerPartition: cfg.InFlightPerPartition, MaxInFlight: cfg.InFlight,
		MaxInFlightPerKey: cfg.InFlightPerKey, CatchUpRatio: cfg.CatchUpRatio,
		MaxEventBytes: cfg.EventMaxBytes, StallAfter: cfg.StallAfter,
		MaxInFlightBytes: cfg.InFlightBytes, GroupInstanceID: cfg.GroupInstanceID,
		Logger: log.With(slog.String("component", "consumer")), Registerer: reg,
	}, batcher)
	if err != nil {
		return err
	}
	probe := consumers.NewProbe(cfg.Kafka, cfg.Topic)
	defer probe.Close()

	w := &worker{
		db: db, migrator: migrator, consumer: consumer, dispatcher: dispatcher, probe: probe,
		readiness: newWorkerReadiness(cfg, log, db, migrator, probe, consumer, dispatcher),
		registry:  reg, log: log,
	}
	srv, err := w.listen(cfg.HTTPAddr)
	if err != nil {
		return err
	}
	log.Info("serving health, readiness and metrics", slog.String("addr", w.addr))

	// The components stop on runCtx: the consumer first finishes its event
	// in flight and commits offsets, the dispatcher settles its call in flight.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	g, gctx := errgroup.WithContext(runCtx)
	// The batcher stops after the consumer: handlers in flight get their answers.
	batchCtx, stopBatcher := context.WithCancel(context.WithoutCancel(gctx))
	defer stopBatcher()
	g.Go(func() error { return batcher.Run(batchCtx) })
	g.Go(func() error {
		defer stopBatcher()
		return consumer.Run(gctx)
	})
	g.Go(func() error { return dispatcher.Run(gctx) })
	g.Go(func() error { backlog.run(gctx); return nil })
	g.Go(func() error {
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-notify:
				if err := outbox.Notify(gctx); err != nil && gctx.Err() == nil {
					log.Warn("announce deliveries to the leading replica", slog.Any("error", err))
				}
			}
		}
	})
	g.Go(func() error {
		// Commits of other replicas wake this one's dispatcher when it leads.
		return outbox.Listen(gctx, dispatcher.Wake, func(err error) {
			log.Warn("outbox notifications: reconnecting", slog.Any("error", err))
		})
	})
	g.Go(func() error { return w.serve(srv) })
	g.Go(func() error { return w.readiness.run(gctx, consumer.Running()) })
	if started != nil {
		go func() {
			select {
			case <-consumer.Running():
				started(w)
			case <-gctx.Done():
			}
		}()
	}
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()

	select {
	case err := <-done:
		// A component failed on its own.
		shutdownHTTP(srv)
		return err
	case <-ctx.Done():
	}
	log.Info("roomcast stopping: finishing the work in flight", slog.Duration("timeout", cfg.ShutdownTimeout))
	cancel()
	shutdownHTTP(srv)
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		log.Info("roomcast stopped")
		return nil
	case <-time.After(cfg.ShutdownTimeout):
		return fmt.Errorf("shutdown took longer than SHUTDOWN_TIMEOUT (%s)", cfg.ShutdownTimeout)
	}
}
