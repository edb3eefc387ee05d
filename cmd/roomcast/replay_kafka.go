package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/roomcast/roomcast/config"

	"github.com/IBM/sarama"
	"gorm.io/gorm"

	"github.com/roomcast/roomcast/consumers"
	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/projections"
	"github.com/roomcast/roomcast/publishers"
)

func runReplayKafka(ctx context.Context, args []string, env config.Getenv, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay kafka", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	from := fs.String("from", "", "earliest, or an RFC 3339 time: each partition from its first message at or after it")
	notify := fs.Bool("notify", false, "owe the replayed events' deliveries to Pusher and send them (clients see them again)")
	dry := fs.Bool("dry-run", false, "report what would change; change nothing and send nothing")
	deadLetter := fs.Bool("dead-letter", true, "send events that break the contract or cannot apply to the dead-letter topic")
	batchMax := fs.Int("batch", 2000, "most events per transaction")
	liveGroup := fs.String("live-group", "", "without -notify, stop each partition at this group's committed offset (default $KAFKA_CONSUMER_GROUP; \"-\" reads to the end)")
	every := fs.Duration("progress-every", 10*time.Second, "interval of progress log lines when not on a terminal")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v: %s", errUsage, err, replayUsage)
	}
	if fs.NArg() > 0 || *batchMax <= 0 || *every <= 0 {
		return fmt.Errorf("%w: replay kafka: unexpected %q: %s", errUsage, strings.Join(fs.Args(), " "), replayUsage)
	}
	var since time.Time
	switch {
	case *from == "":
		return fmt.Errorf("%w: replay kafka needs -from earliest or -from <RFC3339 time>", errUsage)
	case *from == "earliest":
	default:
		t, err := time.Parse(time.RFC3339Nano, *from)
		if err != nil {
			return fmt.Errorf("%w: replay kafka -from %q: not earliest nor an RFC 3339 time such as 2026-11-27T08:00:00Z", errUsage, *from)
		}
		since = t
	}
	needs := []config.Need{config.Kafka, config.Database}
	if *notify && !*dry {
		needs = append(needs, config.Pusher)
	}
	cfg, err := config.Load(env, needs...)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr).With(slog.String("command", "replay kafka"), slog.String("topic", cfg.Topic))
	db, err := openCheckedDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() { _ = projections.Close(db) }()

	// Without -notify, events the live group has not consumed yet must stay
	// for it: applied silently here, its worker would see duplicates and no
	// client would ever hear of them.
	stopAt := ""
	if !*notify {
		stopAt = cmp.Or(*liveGroup, cfg.ConsumerGroup)
		if stopAt == "-" {
			stopAt = ""
		}
	}
	hist, err := consumers.OpenHistory(consumers.HistoryConfig{Kafka: cfg.Kafka, Topic: cfg.Topic, Since: since, BatchMax: *batchMax,
		StopAtGroup: stopAt, GroupStartsAtLatest: cfg.InitialOffset == "latest",
		Waiting: func(w consumers.HistoryWait) { logHistoryWait(log, w) }})
	if errors.Is(err, consumers.ErrGroupUnknown) || errors.Is(err, consumers.ErrGroupNotOnTopic) {
		return fmt.Errorf("%w\n"+
			"without -notify the replay stops each partition at the committed offset of the live consumer group (-live-group, default KAFKA_CONSUMER_GROUP), "+
			"leaving what it has not consumed to its worker, which notifies clients of it; check that this is the group `roomcast run` uses for %s. "+
			"To read every partition to its end on purpose (a new database before the worker's first run; the events it applies are then never notified), pass -live-group -", err, cfg.Topic)
	}
	if err != nil {
		return err
	}
	defer func() { _ = hist.Close() }()
	if left := hist.LeftToGroup(); left > 0 {
		fmt.Fprintf(stdout, "leaving %d messages that consumer group %s has not consumed yet to it (its worker notifies clients of them)\n", left, stopAt)
	}
	replayer, err := projections.NewReplayer(ctx, db, projections.ReplayOptions{Notify: *notify, DryRun: *dry})
	if err != nil {
		return err
	}
	defer replayer.Close()

	rk := &kafkaReplay{cfg: cfg, log: log, replayer: replayer, dry: *dry}
	if *deadLetter && !*dry {
		if rk.dlq, err = consumers.NewTopicProducer(cfg.Kafka, cfg.DLQTopic, log, "dead letters"); err != nil {
			return err
		}
		defer func() { _ = rk.dlq.Close() }()
	}
	// With -notify the replay owes deliveries; a dispatcher of its own sends
	// them when no `roomcast run` leads the outbox (otherwise that one does).
	var stopDispatch func() error
	if *notify && !*dry {
		rk.wake, stopDispatch = startDispatcher(ctx, cfg, db, log)
	}

	log.Info("replaying", slog.Any("spans", hist.Spans()), slog.Int64("messages", hist.Messages()),
		slog.Bool("notify", *notify), slog.Bool("dry_run", *dry))
	start := time.Now()
	prog := newProgress(stderr, log, "replay kafka", *every)
	total := hist.Messages()
	err = hist.Read(ctx, func(msgs []*sarama.ConsumerMessage) error {
		if err := rk.batch(ctx, msgs); err != nil {
			return err
		}
		prog.set(rk.counts.Total().Read, total)
		return nil
	})
	prog.finish()
	var changes []projections.TableChange
	if err == nil && *dry {
		changes, err = replayer.Changes(ctx)
	}
	if err == nil && stopDispatch != nil {
		err = rk.waitDelivered(ctx, db)
	}
	if stopDispatch != nil {
		if derr := stopDispatch(); err == nil {
			err = derr
		}
	}
	elapsed := time.Since(start)
	title := "replay kafka"
	switch {
	case *dry:
		title += " (dry run: nothing changed, nothing sent)"
	case *notify:
		title += " (-notify: deliveries owed to Pusher)"
	default:
		title += " (nothing sent to Pusher)"
	}
	printCounts(stdout, title, rk.counts, elapsed, true)
	if len(changes) > 0 {
		fmt.Fprintln(stdout, "tables the replay would change:")
		for _, t := range changes {
			fmt.Fprintf(stdout, "  %s\n", t)
		}
	}
	logSummary(log, rk.counts, elapsed, err)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return fmt.Errorf("replay interrupted (run it again: what was applied counts as duplicates): %w", err)
		}
		return err
	}
	return nil
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

// kafkaReplay projects batches of history read from Kafka.
type kafkaReplay struct {
	cfg      config.Config
	log      *slog.Logger
	replayer *projections.Replayer
	dlq      *consumers.TopicProducer // nil: do not dead-letter
	dry      bool
	wake     func()
	counts   projections.Counts
	maxOwed  int64
}

func (rk *kafkaReplay) batch(ctx context.Context, msgs []*sarama.ConsumerMessage) error {
	items := make([]projections.Item, 0, len(msgs))
	origin := make([]*sarama.ConsumerMessage, 0, len(msgs))
	var dead []*sarama.ProducerMessage
	deadLetter := func(m *sarama.ConsumerMessage, id, typ, reason string) {
		rk.log.Warn("event in history dead-lettered", slog.String("event_id", id), slog.String("type", typ),
			slog.String("reason", reason), slog.Int("partition", int(m.Partition)), slog.Int64("offset", m.Offset))
		rk.counts.Problems = appendProblem(rk.counts.Problems, projections.Problem{EventID: id, Type: typ, Reason: reason})
		if rk.dlq != nil {
			dead = append(dead, consumers.DeadLetterMessage(rk.cfg.DLQTopic, rk.cfg.Topic, "replay", m, reason))
		}
	}
	for _, m := range msgs {
		env, err := domain.Decoder{MaxValueBytes: rk.cfg.EventMaxBytes}.Decode(m.Value) // the worker's limit
		if err != nil {
			id, typ := consumers.SniffIDType(m.Value)
			c := rk.counts.Of(typ)
			c.Read++
			c.Invalid++
			deadLetter(m, id, typ, err.Error())
			continue
		}
		items = append(items, projections.Item{Env: env, Origin: projections.Origin{Partition: m.Partition, Offset: m.Offset, Timestamp: m.Timestamp,
			Redriven: hasHeader(m, consumers.RedrivenHeader)}})
		origin = append(origin, m)
	}
	if len(items) > 0 {
		results, err := rk.project(ctx, items)
		if err != nil {
			return err
		}
		for i, r := range results {
			env := items[i].Env
			c := rk.counts.Of(string(env.Type))
			c.Read++
			switch {
			case r.Err != nil:
				c.Rejected++
				deadLetter(origin[i], env.ID, string(env.Type), r.Err.Error())
			case r.Outcome == projections.Applied:
				c.Applied++
			case r.Outcome == projections.Unchanged:
				c.Unchanged++
			default: // Duplicate, Conflict: already stored
				c.Duplicates++
			}
		}
	}
	if len(dead) > 0 {
		if err := rk.dlq.SendMessages(dead); err != nil {
			return fmt.Errorf("dead-letter %d events to %s: %w", len(dead), rk.cfg.DLQTopic, err)
		}
	}
	if rk.wake != nil {
		rk.wake()
	}
	return nil
}

// project retries a transient failure a few times (a replay can be run
// again, so giving up is safe).
func (rk *kafkaReplay) project(ctx context.Context, items []projections.Item) ([]projections.Result, error) {
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		results, err := rk.replayer.Project(ctx, items)
		if err == nil || attempt == 6 || ctx.Err() != nil {
			return results, err
		}
		rk.log.Warn("replay batch failed; retrying", slog.Int("attempt", attempt), slog.Any("error", err))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

// waitDelivered waits until the outbox holds no pending delivery up to the
// newest one there now (those this replay owed included).
func (rk *kafkaReplay) waitDelivered(ctx context.Context, db *gorm.DB) error {
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
			rk.log.Info("waiting for Pusher to accept the replayed deliveries", slog.Int64("pending", pending))
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d deliveries still pending (the outbox keeps them; `roomcast run` sends them): %w", pending, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// startDispatcher runs an outbox dispatcher until the returned stop is called.
func startDispatcher(ctx context.Context, cfg config.Config, db *gorm.DB, log *slog.Logger) (wake func(), stop func() error) {
	outbox := projections.NewOutbox(db)
	if cfg.Retention != 0 {
		outbox.KeepDelivered()
	}
	d := publishers.NewDispatcher(outbox, publishers.NewClient(cfg.Pusher), publishers.DispatcherConfig{
		MaxInFlight: cfg.MaxInFlight, BatchEvents: cfg.BatchEvents, Retention: cfg.Retention, StallAfter: cfg.StallAfter,
		Logger: log.With(slog.String("component", "dispatcher")),
	})
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

func hasHeader(m *sarama.ConsumerMessage, key string) bool {
	for _, h := range m.Headers {
		if h != nil && string(h.Key) == key {
			return true
		}
	}
	return false
}

func appendProblem(ps []projections.Problem, p projections.Problem) []projections.Problem {
	if len(ps) < 100 {
		ps = append(ps, p)
	}
	return ps
}
