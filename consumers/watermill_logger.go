package consumers

import (
	"context"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
)

// quietLogger is Watermill's slog adapter that skips Trace and Debug lines
// the slog handler would drop before building them: the adapter turns
// every line's fields into slog attributes before slog checks the level,
// and the router writes two Trace lines per message, all built for
// nothing.
type quietLogger struct {
	watermill.LoggerAdapter
	log *slog.Logger
}

func newWatermillLogger(log *slog.Logger) watermill.LoggerAdapter {
	return quietLogger{LoggerAdapter: watermill.NewSlogLogger(log), log: log}
}

func (l quietLogger) Trace(msg string, fields watermill.LogFields) {
	if l.log.Enabled(context.Background(), watermill.LevelTrace) {
		l.LoggerAdapter.Trace(msg, fields)
	}
}

func (l quietLogger) Debug(msg string, fields watermill.LogFields) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.LoggerAdapter.Debug(msg, fields)
	}
}

// Error logs at Debug a failure that roomcast reports itself (isReported):
// the router writes "Handler returned error" for every nack, which during a
// Postgres restart was an ERROR per event per round of retries.
func (l quietLogger) Error(msg string, err error, fields watermill.LogFields) {
	if err != nil && isReported(err) {
		if l.log.Enabled(context.Background(), slog.LevelDebug) {
			l.LoggerAdapter.Debug(msg, fields.Add(watermill.LogFields{"err": err}))
		}
		return
	}
	l.LoggerAdapter.Error(msg, err, fields)
}

func (l quietLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return quietLogger{LoggerAdapter: l.LoggerAdapter.With(fields), log: l.log}
}
