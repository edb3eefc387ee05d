package consumers

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
)

// The router's per-message Trace and Debug lines reach the log when their
// level is on, and are skipped otherwise.
func TestWatermillLoggerKeepsLevels(t *testing.T) {
	for _, level := range []slog.Level{watermill.LevelTrace, slog.LevelDebug, slog.LevelInfo} {
		var buf bytes.Buffer
		l := newWatermillLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: level}))).
			With(watermill.LogFields{"handler_name": "h"})
		l.Trace("trace line", watermill.LogFields{"k": 1})
		l.Debug("debug line", watermill.LogFields{"k": 2})
		l.Info("info line", watermill.LogFields{"k": 3})
		out := buf.String()
		for line, want := range map[string]bool{"trace line": level <= watermill.LevelTrace, "debug line": level <= slog.LevelDebug, "info line": true} {
			if got := strings.Contains(out, line); got != want {
				t.Errorf("level %v: %q logged = %v, want %v\n%s", level, line, got, want, out)
			}
		}
		if !strings.Contains(out, "handler_name=h") {
			t.Errorf("level %v: With's fields are lost:\n%s", level, out)
		}
	}
}
