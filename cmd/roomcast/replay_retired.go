package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/roomcast/roomcast/config"

	"github.com/roomcast/roomcast/projections"
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
	db, err := openCheckedDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() { _ = projections.Close(db) }()
	retired, err := projections.RetiredSchemas(ctx, db)
	if err != nil {
		return err
	}
	var bytes int64
	for _, r := range retired {
		fmt.Fprintf(stdout, "%s: %d tables, %.1f MiB\n", r.Name, r.Tables, float64(r.Bytes)/(1<<20))
		bytes += r.Bytes
	}
	if *dry {
		fmt.Fprintf(stdout, "would drop %d schemas of retired read models (%.1f MiB; dry run)\n", len(retired), float64(bytes)/(1<<20))
		return nil
	}
	if err := projections.DropRetired(ctx, db, retired); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "dropped %d schemas of retired read models (%.1f MiB)\n", len(retired), float64(bytes)/(1<<20))
	return nil
}
