package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/roomcast/roomcast/config"
	"github.com/roomcast/roomcast/projections"
	"github.com/roomcast/roomcast/replay"
)

const replayUsage = `replay rebuild [-dry-run] [-restart] [-force] [-chunk N] [-progress-every D]
  or   replay drop-retired [-dry-run]
  or   replay kafka -from earliest|<RFC3339 time> [-notify] [-dry-run] [-live-group G|-] [-dead-letter=true] [-batch N] [-progress-every D]
  or   replay notify -room R[,R...] [-from-seq N | -since T] [-until T] [-dry-run] [-chunk N]`

// runReplay is `roomcast replay rebuild|kafka ...`.
func runReplay(ctx context.Context, args []string, env config.Getenv, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: replay needs rebuild or kafka: %s", errUsage, replayUsage)
	}
	if env("GOGC") == "" {
		// A replay allocates fast and holds little (a few chunks of events):
		// collecting less often saves a fifth of its CPU.
		defer debug.SetGCPercent(debug.SetGCPercent(400))
	}
	switch args[0] {
	case "rebuild":
		return runReplayRebuild(ctx, args[1:], env, stdout, stderr)
	case "kafka":
		return runReplayKafka(ctx, args[1:], env, stdout, stderr)
	case "drop-retired":
		return runReplayDropRetired(ctx, args[1:], env, stdout)
	case "notify":
		return runReplayNotify(ctx, args[1:], env, stdout, stderr)
	}
	return fmt.Errorf("%w: replay %q: want rebuild, kafka, notify or drop-retired: %s", errUsage, args[0], replayUsage)
}

func runReplayRebuild(ctx context.Context, args []string, env config.Getenv, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay rebuild", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dry := fs.Bool("dry-run", false, "build into temporary tables and report what would change; change nothing")
	restart := fs.Bool("restart", false, "discard an interrupted rebuild instead of resuming it")
	force := fs.Bool("force", false, "swap even if some room's rebuilt last seq is lower than the live one (such a room keeps its live last seq)")
	chunk := fs.Int("chunk", 10000, "events per transaction")
	every := fs.Duration("progress-every", 10*time.Second, "interval of progress log lines when not on a terminal")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v: %s", errUsage, err, replayUsage)
	}
	if fs.NArg() > 0 || *chunk <= 0 || *every <= 0 {
		return fmt.Errorf("%w: replay rebuild: unexpected %q: %s", errUsage, strings.Join(fs.Args(), " "), replayUsage)
	}
	cfg, err := config.Load(env, config.Database)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr).With(slog.String("command", "replay rebuild"))
	db, _, err := projections.OpenChecked(ctx, cfg.DatabaseURL, cfg.DatabaseMaxConns)
	if err != nil {
		return err
	}
	defer func() { _ = projections.Close(db) }()

	prog := newProgress(stderr, log, "rebuild", *every)
	s, err := replay.Rebuild(ctx, replay.RebuildConfig{
		DB: db, ChunkSize: *chunk, DryRun: *dry, Restart: *restart, Force: *force, Log: log,
		Progress: prog.set, Done: prog.finish,
	})
	printRebuildSummary(stdout, s)
	return err
}

func printRebuildSummary(w io.Writer, s projections.RebuildSummary) {
	title := "replay rebuild"
	if s.DryRun {
		title += " (dry run: nothing changed)"
	}
	if s.Resumed {
		title += " (resumed: counts include the interrupted run)"
	}
	printCounts(w, title, s.Counts, s.Elapsed, false)
	if len(s.Tables) > 0 {
		verb := "changed"
		if s.DryRun {
			verb = "would change"
		}
		fmt.Fprintf(w, "read models the rebuild %s:\n", verb)
		for _, t := range s.Tables {
			fmt.Fprintf(w, "  %s\n", t)
		}
	}
	if s.Swapped {
		fmt.Fprintf(w, "swapped in: live projection waited %v while the last %d events applied and the tables swapped\n",
			s.LockHeld.Round(100*time.Microsecond), s.TailEvents)
		fmt.Fprintf(w, "the replaced read models are kept in schema %s; `roomcast replay drop-retired` drops them\n", s.Retired)
	}
	if s.SeqsKept > 0 {
		fmt.Fprintf(w, "forced: %d rooms kept their live last seq, higher than the rebuilt one (their next events continue after it)\n", s.SeqsKept)
	}
	if s.SeqsWouldLower > 0 {
		fmt.Fprintf(w, "warning: the rebuilt tables would lower %d rooms' last seq below what clients saw: a rebuild refuses to swap them unless -force\n", s.SeqsWouldLower)
	}
	if s.SeqMismatches > 0 {
		fmt.Fprintf(w, "warning: %d room events got another seq than live projection gave them (clients saw the old ones)\n", s.SeqMismatches)
	}
}

// printCounts writes a summary: totals, a line per event type, the problems.
func printCounts(w io.Writer, title string, c projections.Counts, elapsed time.Duration, kafka bool) {
	t := c.Total()
	rate := float64(t.Read) / max(elapsed.Seconds(), 1e-9)
	fmt.Fprintf(w, "%s: %d events read in %v (%.0f events/s)\n", title, t.Read, elapsed.Round(time.Millisecond), rate)
	if kafka {
		fmt.Fprintf(w, "  applied %d, unchanged %d, skipped as duplicates %d, dead-lettered %d (invalid %d, not applicable %d)\n",
			t.Applied, t.Unchanged, t.Duplicates, t.Invalid+t.Rejected, t.Invalid, t.Rejected)
	} else {
		fmt.Fprintf(w, "  applied %d, unchanged %d, skipped %d (invalid %d, not applicable %d)\n",
			t.Applied, t.Unchanged, t.Invalid+t.Rejected, t.Invalid, t.Rejected)
	}
	if len(c.ByType) > 0 {
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  type\tread\tapplied\tunchanged\tduplicates\tinvalid\tnot applicable")
		for _, typ := range c.Types() {
			v := c.ByType[typ]
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%d\t%d\t%d\n", typ, v.Read, v.Applied, v.Unchanged, v.Duplicates, v.Invalid, v.Rejected)
		}
		_ = tw.Flush()
	}
	for _, p := range c.Problems {
		fmt.Fprintf(w, "  skipped %s (%s): %s\n", p.EventID, p.Type, p.Reason)
	}
	if skipped := t.Invalid + t.Rejected; skipped > int64(len(c.Problems)) {
		fmt.Fprintf(w, "  ... and %d more (each is logged)\n", skipped-int64(len(c.Problems)))
	}
}
