package replay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
	"gorm.io/gorm"

	"github.com/roomcast/roomcast/consumers"
	"github.com/roomcast/roomcast/projections"
	"github.com/roomcast/roomcast/publishers"
)

// KafkaConfig is what Kafka needs.
type KafkaConfig struct {
	Kafka    consumers.KafkaConfig
	Topic    string    // the events topic
	DLQTopic string    // where events that break the contract or cannot apply go
	Since    time.Time // each partition from its first message at or after it; zero: from the oldest
	BatchMax int       // most events per transaction
	// StopAtGroup, if set, ends each partition at this consumer group's
	// committed offset: what the live group has not consumed yet is left
	// to its worker (consumers.HistoryConfig.StopAtGroup).
	StopAtGroup         string
	GroupStartsAtLatest bool // the live group starts at the latest offset (KAFKA_INITIAL_OFFSET=latest)
	EventMaxBytes       int  // the worker's limit on an event's values

	Notify     bool // owe the replayed events' deliveries to Pusher and send them
	DryRun     bool // report what would change; change nothing and send nothing
	DeadLetter bool // send events that break the contract or cannot apply to DLQTopic

	DB *gorm.DB
	// With Notify and not DryRun, a dispatcher of the replay's own sends
	// the deliveries (when no `roomcast run` leads the outbox) with these.
	Pusher   publishers.ClientConfig
	Dispatch publishers.DispatcherConfig

	Log *slog.Logger
	// LeftToGroup, if set, hears before reading how many messages are left
	// to StopAtGroup. Progress, if set, hears that done of about total
	// events are processed; Done, if set, that reading has ended.
	LeftToGroup func(messages int64)
	Progress    func(done, total int64)
	Done        func()
}

// Summary is how a replay from Kafka went.
type Summary struct {
	// Ran says that reading began: Counts and Elapsed then say how far it
	// went, also when Kafka returns an error.
	Ran     bool
	Counts  projections.Counts
	Elapsed time.Duration
	Changes []projections.TableChange // with DryRun: the tables the replay would change
}

// Kafka replays the events topic's history into the read models: it
// decodes each event with the worker's limits, projects batches through
// projections' batch path, dead-letters what breaks the contract or cannot
// apply, and with Notify waits until Pusher accepted the deliveries owed.
// An error before reading (the live group unknown: consumers.ErrGroupUnknown,
// consumers.ErrGroupNotOnTopic) comes with a summary that did not run.
func Kafka(ctx context.Context, cfg KafkaConfig) (Summary, error) {
	log := logger(cfg.Log)
	hist, err := consumers.OpenHistory(consumers.HistoryConfig{Kafka: cfg.Kafka, Topic: cfg.Topic, Since: cfg.Since, BatchMax: cfg.BatchMax,
		StopAtGroup: cfg.StopAtGroup, GroupStartsAtLatest: cfg.GroupStartsAtLatest,
		Waiting: func(w consumers.HistoryWait) { logHistoryWait(log, w) }})
	if err != nil {
		return Summary{}, err
	}
	defer func() { _ = hist.Close() }()
	if left := hist.LeftToGroup(); left > 0 && cfg.LeftToGroup != nil {
		cfg.LeftToGroup(left)
	}
	replayer, err := projections.NewReplayer(ctx, cfg.DB, projections.ReplayOptions{Notify: cfg.Notify, DryRun: cfg.DryRun})
	if err != nil {
		return Summary{}, err
	}
	defer replayer.Close()

	rk := &kafkaReplay{cfg: cfg, log: log, replayer: replayer}
	if cfg.DeadLetter && !cfg.DryRun {
		if rk.dlq, err = consumers.NewTopicProducer(cfg.Kafka, cfg.DLQTopic, log, "dead letters"); err != nil {
			return Summary{}, err
		}
		defer func() { _ = rk.dlq.Close() }()
	}
	// With Notify the replay owes deliveries; a dispatcher of its own sends
	// them when no `roomcast run` leads the outbox (otherwise that one does).
	var stopDispatch func() error
	if cfg.Notify && !cfg.DryRun {
		rk.wake, stopDispatch = startDispatcher(ctx, cfg, log)
	}

	log.Info("replaying", slog.Any("spans", hist.Spans()), slog.Int64("messages", hist.Messages()),
		slog.Bool("notify", cfg.Notify), slog.Bool("dry_run", cfg.DryRun))
	start := time.Now()
	total := hist.Messages()
	err = hist.Read(ctx, func(msgs []*sarama.ConsumerMessage) error {
		if err := rk.batch(ctx, msgs); err != nil {
			return err
		}
		if cfg.Progress != nil {
			cfg.Progress(rk.counts.Total().Read, total)
		}
		return nil
	})
	if cfg.Done != nil {
		cfg.Done()
	}
	s := Summary{Ran: true}
	if err == nil && cfg.DryRun {
		s.Changes, err = replayer.Changes(ctx)
	}
	if err == nil && stopDispatch != nil {
		err = waitDelivered(ctx, cfg.DB, log)
	}
	if stopDispatch != nil {
		if derr := stopDispatch(); err == nil {
			err = derr
		}
	}
	s.Counts, s.Elapsed = rk.counts, time.Since(start)
	logSummary(log, s.Counts, s.Elapsed, err)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return s, fmt.Errorf("replay interrupted (run it again: what was applied counts as duplicates): %w", err)
		}
		return s, err
	}
	return s, nil
}

// logHistoryWait says that a partition of the replay waits for Kafka.
func logHistoryWait(log *slog.Logger, w consumers.HistoryWait) {
	attrs := []any{slog.Int("partition", int(w.Partition)), slog.Int64("offset", w.Offset), slog.Int64("end", w.End),
		slog.Duration("waited", w.For.Round(time.Second))}
	if w.Err != nil {
		attrs = append(attrs, slog.Any("error", w.Err))
	}
	log.Warn("replay waiting for Kafka: the partition delivers nothing although messages are left below its end", attrs...)
}
