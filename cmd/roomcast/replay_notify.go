package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/roomcast/roomcast/config"
	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/projections"
	"github.com/roomcast/roomcast/replay"
)

// runReplayNotify is `roomcast replay notify`: it owes the stored events of
// rooms to Pusher again (replay.Notify).
func runReplayNotify(ctx context.Context, args []string, env config.Getenv, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay notify", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	rooms := fs.String("room", "", "rooms whose events to send again, comma-separated")
	fromSeq := fs.Int64("from-seq", 0, "first seq to send again (default: the first)")
	since := fs.String("since", "", "send again the events recorded at or after this RFC 3339 time")
	until := fs.String("until", "", "send again only the events recorded before this RFC 3339 time")
	dry := fs.Bool("dry-run", false, "count what would be sent again; write nothing")
	chunk := fs.Int("chunk", 500, "events per transaction")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v: %s", errUsage, err, replayUsage)
	}
	if fs.NArg() > 0 || *chunk <= 0 || *fromSeq < 0 {
		return fmt.Errorf("%w: replay notify: unexpected %q: %s", errUsage, strings.Join(fs.Args(), " "), replayUsage)
	}
	cfg := replay.NotifyConfig{FromSeq: *fromSeq, DryRun: *dry, Chunk: *chunk}
	for _, r := range strings.Split(*rooms, ",") {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		if !domain.IsValidID(r) {
			return fmt.Errorf("%w: replay notify -room %q: not a room id", errUsage, r)
		}
		cfg.Rooms = append(cfg.Rooms, r)
	}
	if len(cfg.Rooms) == 0 {
		return fmt.Errorf("%w: replay notify needs -room R[,R...]: %s", errUsage, replayUsage)
	}
	if *fromSeq > 0 && *since != "" {
		return fmt.Errorf("%w: replay notify takes -from-seq or -since, not both", errUsage)
	}
	for _, t := range []struct {
		flag, value string
		to          *time.Time
	}{{"since", *since, &cfg.Since}, {"until", *until, &cfg.Until}} {
		if t.value == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339Nano, t.value)
		if err != nil {
			return fmt.Errorf("%w: replay notify -%s %q: not an RFC 3339 time such as 2026-11-27T08:00:00Z", errUsage, t.flag, t.value)
		}
		*t.to = v
	}
	if !cfg.Since.IsZero() && !cfg.Until.IsZero() && !cfg.Until.After(cfg.Since) {
		return fmt.Errorf("%w: replay notify: -until %s is not after -since %s", errUsage, *until, *since)
	}
	c, err := config.Load(env, config.Database)
	if err != nil {
		return err
	}
	cfg.Log = newLogger(c, stderr).With(slog.String("command", "replay notify"))
	db, _, err := projections.OpenChecked(ctx, c.DatabaseURL, c.DatabaseMaxConns)
	if err != nil {
		return err
	}
	defer func() { _ = projections.Close(db) }()
	cfg.DB = db
	s, err := replay.Notify(ctx, cfg)
	printNotifySummary(stdout, s)
	return err
}

func printNotifySummary(w io.Writer, s replay.NotifySummary) {
	verb := "owed to Pusher again"
	if s.DryRun {
		verb = "would be owed to Pusher again (dry run: nothing written)"
	}
	fmt.Fprintf(w, "replay notify: %d deliveries of %d rooms %s in %v\n", s.Owed(), len(s.Rooms), verb, s.Elapsed.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  room\tlast seq\tevents read\towed again\tseqs\tstill owed (skipped)\ttoo large (skipped)")
	for _, r := range s.Rooms {
		seqs := "-"
		if r.Owed > 0 {
			seqs = fmt.Sprintf("%d-%d", r.FirstSeq, r.LastOwedSeq)
		}
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%s\t%d\t%d\n", r.Room, r.LastSeq, r.Read, r.Owed, seqs, r.StillOwed, r.TooLarge)
	}
	_ = tw.Flush()
	if !s.DryRun && s.Owed() > 0 {
		fmt.Fprintln(w, "the outbox holds them: a running `roomcast run` sends them, each room's in seq order")
	}
}
