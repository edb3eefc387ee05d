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
	"github.com/roomcast/roomcast/consumers"
	"github.com/roomcast/roomcast/projections"
	"github.com/roomcast/roomcast/publishers"
	"github.com/roomcast/roomcast/replay"
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
	db, _, err := projections.OpenChecked(ctx, cfg.DatabaseURL, cfg.DatabaseMaxConns)
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
	prog := newProgress(stderr, log, "replay kafka", *every)
	s, err := replay.Kafka(ctx, replay.KafkaConfig{
		Kafka: cfg.Kafka, Topic: cfg.Topic, DLQTopic: cfg.DLQTopic, Since: since, BatchMax: *batchMax,
		StopAtGroup: stopAt, GroupStartsAtLatest: cfg.InitialOffset == "latest", EventMaxBytes: cfg.EventMaxBytes,
		Notify: *notify, DryRun: *dry, DeadLetter: *deadLetter,
		DB: db, Pusher: cfg.Pusher,
		Dispatch: publishers.DispatcherConfig{MaxInFlight: cfg.MaxInFlight, BatchEvents: cfg.BatchEvents, Retention: cfg.Retention, StallAfter: cfg.StallAfter},
		Log:      log,
		LeftToGroup: func(left int64) {
			fmt.Fprintf(stdout, "leaving %d messages that consumer group %s has not consumed yet to it (its worker notifies clients of them)\n", left, stopAt)
		},
		Progress: prog.set, Done: prog.finish,
	})
	if !s.Ran {
		if errors.Is(err, consumers.ErrGroupUnknown) || errors.Is(err, consumers.ErrGroupNotOnTopic) {
			return fmt.Errorf("%w\n"+
				"without -notify the replay stops each partition at the committed offset of the live consumer group (-live-group, default KAFKA_CONSUMER_GROUP), "+
				"leaving what it has not consumed to its worker, which notifies clients of it; check that this is the group `roomcast run` uses for %s. "+
				"To read every partition to its end on purpose (a new database before the worker's first run; the events it applies are then never notified), pass -live-group -", err, cfg.Topic)
		}
		return err
	}
	title := "replay kafka"
	switch {
	case *dry:
		title += " (dry run: nothing changed, nothing sent)"
	case *notify:
		title += " (-notify: deliveries owed to Pusher)"
	default:
		title += " (nothing sent to Pusher)"
	}
	printCounts(stdout, title, s.Counts, s.Elapsed, true)
	if len(s.Changes) > 0 {
		fmt.Fprintln(stdout, "tables the replay would change:")
		for _, t := range s.Changes {
			fmt.Fprintf(stdout, "  %s\n", t)
		}
	}
	return err
}
