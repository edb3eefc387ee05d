package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/roomcast/roomcast/config"
	"github.com/roomcast/roomcast/projections"
	"github.com/roomcast/roomcast/replay"
)

// runReplayDropRetired is `roomcast replay drop-retired`: it drops the read
// models that rebuilds replaced and kept (projections.RetiredPrefix).
func runReplayDropRetired(ctx context.Context, args []string, env config.Getenv, stdout io.Writer) error {
	fs := flag.NewFlagSet("replay drop-retired", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dry := fs.Bool("dry-run", false, "list what would be dropped; drop nothing")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return fmt.Errorf("%w: replay drop-retired: %v %s: %s", errUsage, err, strings.Join(fs.Args(), " "), replayUsage)
	}
	cfg, err := config.Load(env, config.Database)
	if err != nil {
		return err
	}
	db, _, err := projections.OpenChecked(ctx, cfg.DatabaseURL, cfg.DatabaseMaxConns)
	if err != nil {
		return err
	}
	defer func() { _ = projections.Close(db) }()
	r, err := replay.DropRetired(ctx, db, *dry)
	for _, s := range r.Schemas {
		fmt.Fprintf(stdout, "%s: %d tables, %.1f MiB\n", s.Name, s.Tables, float64(s.Bytes)/(1<<20))
	}
	if err != nil {
		return err
	}
	if !r.Dropped {
		fmt.Fprintf(stdout, "would drop %d schemas of retired read models (%.1f MiB; dry run)\n", len(r.Schemas), float64(r.Bytes)/(1<<20))
		return nil
	}
	fmt.Fprintf(stdout, "dropped %d schemas of retired read models (%.1f MiB)\n", len(r.Schemas), float64(r.Bytes)/(1<<20))
	return nil
}
