package replay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"gorm.io/gorm"

	"github.com/roomcast/roomcast/projections"
	"github.com/roomcast/roomcast/publishers"
)

// startDispatcher runs an outbox dispatcher until the returned stop is called.
func startDispatcher(ctx context.Context, cfg KafkaConfig, log *slog.Logger) (wake func(), stop func() error) {
	outbox := projections.NewOutbox(cfg.DB)
	if cfg.Dispatch.Retention != 0 {
		outbox.KeepDelivered()
	}
	dc := cfg.Dispatch
	if dc.Logger == nil {
		dc.Logger = log.With(slog.String("component", "dispatcher"))
	}
	d := publishers.NewDispatcher(outbox, publishers.NewClient(cfg.Pusher), dc)
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- d.Run(dctx) }()
	return d.Wake, func() error {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("dispatcher: %w", err)
		}
		return nil
	}
}

// waitDelivered waits until the outbox holds no pending delivery up to the
// newest one there now (those this replay owed included).
func waitDelivered(ctx context.Context, db *gorm.DB, log *slog.Logger) error {
	var newest int64
	if err := db.WithContext(ctx).Raw(`SELECT COALESCE(max(id), 0) FROM deliveries`).Scan(&newest).Error; err != nil {
		return fmt.Errorf("read the outbox: %w", err)
	}
	last := time.Now()
	for {
		var pending int64
		if err := db.WithContext(ctx).Raw(`SELECT count(*) FROM deliveries WHERE id <= ? AND delivered_at IS NULL AND parked_at IS NULL`, newest).Scan(&pending).Error; err != nil {
			return fmt.Errorf("read the outbox: %w", err)
		}
		if pending == 0 {
			return nil
		}
		if time.Since(last) > 10*time.Second {
			log.Info("waiting for Pusher to accept the replayed deliveries", slog.Int64("pending", pending))
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d deliveries still pending (the outbox keeps them; `roomcast run` sends them): %w", pending, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
