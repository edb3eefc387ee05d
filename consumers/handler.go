package consumers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/projections"
)

// Projector is what the handler needs from the projection: project one
// event in one transaction, durable when it returns nil.
type Projector interface {
	Project(ctx context.Context, env domain.Envelope, src projections.Source) (projections.Outcome, error)
}

// handler decodes one Kafka message and projects it.
type handler struct {
	projector Projector
	log       *slog.Logger
	metrics   *consumerMetrics
}

// Handle returns nil once the event is durable (or was seen before), a
// permanent error (see isPermanent) for a contract violation, and any other
// error for a transient failure that must be retried.
func (h *handler) Handle(msg *message.Message) error {
	env, err := decode(msg)
	if err != nil {
		typ := sniffType(msg.Payload)
		h.metrics.consumed.WithLabelValues(typ).Inc()
		h.deadLetter(msg, typ, "invalid", err)
		return err
	}
	h.metrics.consumed.WithLabelValues(string(env.Type)).Inc()
	src := projections.Source{Partition: -1}
	if p, ok := kafka.MessagePartitionFromCtx(msg.Context()); ok {
		src.Partition = p
		src.Offset, _ = kafka.MessagePartitionOffsetFromCtx(msg.Context())
	}
	if ts, ok := kafka.MessageTimestampFromCtx(msg.Context()); ok {
		src.Timestamp = ts
	}
	src.Redriven = msg.Metadata.Get(RedrivenHeader) != ""
	if _, err := h.projector.Project(msg.Context(), env, src); err != nil {
		if errors.Is(err, domain.ErrUnknownMessage) {
			h.deadLetter(msg, string(env.Type), "unknown_message", err)
		}
		return err
	}
	return nil
}

// decoded is DecodeAhead's result: an event decoded when its message was read.
type decoded struct {
	env domain.Envelope
	err error
}

// DecodeAhead decodes an event's payload for KeyedSubscriberConfig.Prepare:
// the handler then uses the result instead of decoding the payload itself.
func DecodeAhead(payload []byte) any {
	d := &decoded{}
	d.env, d.err = domain.Decode(payload)
	return d
}

// decode is msg's event: decoded when it was read (DecodeAhead), or now.
func decode(msg *message.Message) (domain.Envelope, error) {
	if d, ok := Prepared(msg.Context()).(*decoded); ok {
		return d.env, d.err
	}
	return domain.Decode(msg.Payload)
}

// deadLetter counts and logs a message about to be dead-lettered, once the
// earlier messages of its key are acked: with several messages of a room in
// flight, the dead letters of a room still reach the dead-letter topic in the
// room's order (re-driving them later replays them in that order).
func (h *handler) deadLetter(msg *message.Message, typ, kind string, err error) {
	turnFrom(msg.Context()).waitEarlierAcked(msg.Context())
	h.metrics.deadLettered.WithLabelValues(typ, kind).Inc()
	attrs := []any{slog.String("type", typ), slog.String("reason", err.Error())}
	if p, ok := kafka.MessagePartitionFromCtx(msg.Context()); ok {
		off, _ := kafka.MessagePartitionOffsetFromCtx(msg.Context())
		attrs = append(attrs, slog.Int("partition", int(p)), slog.Int64("offset", off))
	}
	h.log.Warn("event dead-lettered", attrs...)
}

// sniffType labels an invalid event's metrics with its type when that is one
// of the contract's, else "invalid" (labels stay a small, fixed set).
func sniffType(payload []byte) string {
	var head struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(payload, &head) == nil && slices.Contains(domain.EventTypes, domain.EventType(head.Type)) {
		return head.Type
	}
	return "invalid"
}

// isPermanent says whether err can never succeed on retry: a contract
// violation, an edit or delete of an unknown message, or a panic while
// handling (a bug that would otherwise block the partition forever).
func isPermanent(err error) bool {
	var p handlerPanic
	return domain.IsPermanent(err) || errors.As(err, &p)
}

// handlerPanic is a recovered panic, reported with a one-line reason (the
// stack goes to the log, not to the dead-letter header).
type handlerPanic struct{ value any }

func (p handlerPanic) Error() string {
	return fmt.Sprintf("panic while handling the event: %v", p.value)
}

// recoverPanics turns a panic in h into a handlerPanic error.
func (h *handler) recoverPanics(next message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		msgs, err := middleware.Recoverer(next)(msg)
		var rec middleware.RecoveredPanicError
		if errors.As(err, &rec) {
			h.log.Error("panic while handling an event: dead-lettering it", slog.Any("panic", rec.V), slog.String("stack", rec.Stacktrace))
			turnFrom(msg.Context()).waitEarlierAcked(msg.Context())
			h.metrics.deadLettered.WithLabelValues(sniffType(msg.Payload), "panic").Inc()
			return msgs, handlerPanic{value: rec.V}
		}
		return msgs, err
	}
}
