package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"

	"github.com/roomcast/roomcast/config"
	"github.com/roomcast/roomcast/consumers"
	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/projections"
)

const dlqUsage = `dlq list [-reason TEXT] [-id ID,...]
  or   dlq redrive (-id ID,... | -reason TEXT | -all) [-dry-run]`

// runDLQ is `roomcast dlq list|redrive`.
func runDLQ(ctx context.Context, args []string, env config.Getenv, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: dlq needs list or redrive: %s", errUsage, dlqUsage)
	}
	switch args[0] {
	case "list":
		return runDLQList(ctx, args[1:], env, stdout)
	case "redrive":
		return runDLQRedrive(ctx, args[1:], env, stdout, stderr)
	}
	return fmt.Errorf("%w: dlq %q: want list or redrive: %s", errUsage, args[0], dlqUsage)
}

// filterFlags sets f from -id and -reason.
func filterFlags(fs *flag.FlagSet, f *consumers.DeadLetterFilter) {
	fs.Func("id", "CloudEvents id(s) to choose, comma-separated (repeatable)", func(v string) error {
		if f.IDs == nil {
			f.IDs = map[string]bool{}
		}
		for _, id := range strings.Split(v, ",") {
			if id = strings.TrimSpace(id); id != "" {
				f.IDs[id] = true
			}
		}
		return nil
	})
	fs.StringVar(&f.Reason, "reason", "", "choose dead letters whose reason contains this text")
}

func runDLQList(ctx context.Context, args []string, env config.Getenv, stdout io.Writer) error {
	fs := flag.NewFlagSet("dlq list", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var f consumers.DeadLetterFilter
	filterFlags(fs, &f)
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return fmt.Errorf("%w: dlq list: %v %s: %s", errUsage, err, strings.Join(fs.Args(), " "), dlqUsage)
	}
	f.All = len(f.IDs) == 0 && f.Reason == ""
	cfg, err := config.Load(env, config.Kafka)
	if err != nil {
		return err
	}
	dls, err := consumers.ReadDeadLetters(ctx, cfg.Kafka, cfg.DLQTopic)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION/OFFSET\tTIME\tID\tTYPE\tREASON")
	shown := 0
	for _, d := range dls {
		if !f.Match(d) {
			continue
		}
		shown++
		fmt.Fprintf(tw, "%d/%d\t%s\t%s\t%s\t%s\n", d.Msg.Partition, d.Msg.Offset, domain.FormatTime(d.Msg.Timestamp), d.ID, d.Type, d.Reason)
	}
	_ = tw.Flush()
	fmt.Fprintf(stdout, "%d of %d dead letters in %s\n", shown, len(dls), cfg.DLQTopic)
	return nil
}

func runDLQRedrive(ctx context.Context, args []string, env config.Getenv, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dlq redrive", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var f consumers.DeadLetterFilter
	filterFlags(fs, &f)
	fs.BoolVar(&f.All, "all", false, "choose every dead letter")
	dry := fs.Bool("dry-run", false, "show what would be sent; send nothing")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return fmt.Errorf("%w: dlq redrive: %v %s: %s", errUsage, err, strings.Join(fs.Args(), " "), dlqUsage)
	}
	if !f.All && len(f.IDs) == 0 && f.Reason == "" {
		return fmt.Errorf("%w: dlq redrive needs -id, -reason or -all: %s", errUsage, dlqUsage)
	}
	cfg, err := config.Load(env, config.Kafka, config.Database)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr).With(slog.String("command", "dlq redrive"))
	dls, err := consumers.ReadDeadLetters(ctx, cfg.Kafka, cfg.DLQTopic)
	if err != nil {
		return err
	}
	chosen, dupes := f.Choose(dls)
	db, _, err := projections.OpenChecked(ctx, cfg.DatabaseURL, cfg.DatabaseMaxConns)
	if err != nil {
		return err
	}
	defer func() { _ = projections.Close(db) }()
	ids := make([]string, 0, len(chosen))
	for _, d := range chosen {
		ids = append(ids, d.ID)
	}
	stored, err := projections.StoredIDs(ctx, db, ids)
	if err != nil {
		return err
	}
	var send []consumers.DeadLetter
	applied := 0
	for _, d := range chosen {
		if stored[d.ID] {
			applied++
			log.Info("dead letter already applied: not sent again", slog.String("event_id", d.ID))
			continue
		}
		send = append(send, d)
		fmt.Fprintf(stdout, "redrive %s (%s) from %d/%d: %s\n", d.ID, d.Type, d.Msg.Partition, d.Msg.Offset, d.Reason)
	}
	if len(send) > 0 && !*dry {
		if err := consumers.Redrive(cfg.Kafka, cfg.Topic, send, log); err != nil {
			return err
		}
	}
	verb := "sent"
	if *dry {
		verb = "would send (dry run)"
	}
	fmt.Fprintf(stdout, "%s %d dead letters to %s; skipped %d already applied and %d repeated in %s\n",
		verb, len(send), cfg.Topic, applied, dupes, cfg.DLQTopic)
	return nil
}
