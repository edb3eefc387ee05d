package main

import (
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
)

// progress shows how long work goes: a bar with events/s and time left when
// w is a terminal, otherwise a structured log line every interval.
type progress struct {
	mu       sync.Mutex
	bar      *progressbar.ProgressBar
	log      *slog.Logger
	what     string
	interval time.Duration
	start    time.Time
	last     time.Time
	done     int64
	total    int64
}

func newProgress(w io.Writer, log *slog.Logger, what string, interval time.Duration) *progress {
	p := &progress{log: log, what: what, interval: interval, start: time.Now(), last: time.Now()}
	if f, ok := w.(*os.File); ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())) {
		p.bar = progressbar.NewOptions64(-1,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription(what),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("events"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionSetWidth(30),
			progressbar.OptionOnCompletion(func() { _, _ = io.WriteString(w, "\n") }),
		)
	}
	return p
}

// set reports that done of about total events are processed (total <= 0: unknown).
func (p *progress) set(done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done, p.total = done, total
	if p.bar != nil {
		if total > 0 && int64(p.bar.GetMax()) != total {
			p.bar.ChangeMax64(total)
		}
		_ = p.bar.Set64(done)
		return
	}
	if time.Since(p.last) < p.interval {
		return
	}
	p.last = time.Now()
	p.logLine("replay progress")
}

func (p *progress) logLine(msg string) {
	elapsed := time.Since(p.start)
	rate := float64(p.done) / max(elapsed.Seconds(), 1e-9)
	attrs := []any{slog.String("work", p.what), slog.Int64("done", p.done), slog.Int64("total", p.total),
		slog.Int("events_per_second", int(rate)), slog.Duration("elapsed", elapsed.Round(time.Millisecond))}
	if p.total > p.done && rate > 0 {
		attrs = append(attrs, slog.Duration("left", time.Duration(float64(p.total-p.done)/rate*float64(time.Second)).Round(time.Second)))
	}
	p.log.Info(msg, attrs...)
}

// finish closes the bar, or logs the last line.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Finish()
		return
	}
	p.logLine("replay progress: done")
}
