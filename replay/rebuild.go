package replay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"gorm.io/gorm"

	"github.com/roomcast/roomcast/projections"
)

// RebuildConfig is what Rebuild needs.
type RebuildConfig struct {
	DB        *gorm.DB
	ChunkSize int  // events per transaction
	DryRun    bool // build into temporary tables and report what would change; change nothing
	Restart   bool // discard an interrupted rebuild instead of resuming it
	Force     bool // swap even if some room's rebuilt last seq is lower than the live one
	Log       *slog.Logger
	// Progress, if set, hears that done of about total events are
	// processed; Done, if set, that the rebuild has ended.
	Progress func(done, total int64)
	Done     func()
}

// Rebuild rebuilds the read models from the event store and swaps them in
// (projections.Rebuild), logging the summary. The summary says how far it
// went also when it fails.
func Rebuild(ctx context.Context, cfg RebuildConfig) (projections.RebuildSummary, error) {
	log := logger(cfg.Log)
	s, err := projections.Rebuild(ctx, cfg.DB, projections.RebuildOptions{
		ChunkSize: cfg.ChunkSize, DryRun: cfg.DryRun, Restart: cfg.Restart, Force: cfg.Force, Log: log,
		Progress: func(p projections.RebuildProgress) {
			if cfg.Progress != nil {
				cfg.Progress(p.Done, p.Total)
			}
		},
	})
	if cfg.Done != nil {
		cfg.Done()
	}
	logSummary(log, s.Counts, s.Elapsed, err)
	if err != nil {
		if errors.Is(err, context.Canceled) && !s.DryRun {
			return s, fmt.Errorf("rebuild interrupted; the live read models are untouched and `roomcast replay rebuild` resumes it: %w", err)
		}
		return s, err
	}
	return s, nil
}
