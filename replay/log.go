package replay

import (
	"log/slog"
	"time"

	"github.com/roomcast/roomcast/projections"
)

// logSummary logs how a replay ended.
func logSummary(log *slog.Logger, c projections.Counts, elapsed time.Duration, err error) {
	t := c.Total()
	attrs := []any{slog.Int64("read", t.Read), slog.Int64("applied", t.Applied), slog.Int64("unchanged", t.Unchanged),
		slog.Int64("duplicates", t.Duplicates), slog.Int64("invalid", t.Invalid), slog.Int64("not_applicable", t.Rejected),
		slog.Duration("elapsed", elapsed)}
	if err != nil {
		log.Error("replay stopped", append(attrs, slog.Any("error", err))...)
		return
	}
	log.Info("replay finished", attrs...)
}

// logger is log, or one that discards.
func logger(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}
