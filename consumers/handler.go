package consumers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/projections"
)

// Projector is what the handler needs from the projection: project one
// event in one transaction, durable when it returns nil.
type Projector interface {
	Project(ctx context.Context, env domain.Envelope, src projections.Origin) (projections.Outcome, error)
}

// handler decodes one Kafka message and projects it.
type handler struct {
	projector Projector
	log       *slog.Logger
	metrics   *consumerMetrics
	maxBytes  int // EVENT_MAX_BYTES; 0: no limit
}

// Handle returns nil once the event is durable (or was seen before), a
// permanent error (see isPermanent) for a contract violation, and any other
// error for a transient failure that must be retried.
func (h *handler) Handle(msg *message.Message) error {
	d := h.decode(msg)
	if !d.counted { // once per Kafka message, not per retry or redelivery
		d.counted = true
		h.metrics.countConsumed(d, msg.Payload)
	}
	if d.err != nil {
		return d.err
	}
	_, err := h.projector.Project(msg.Context(), d.env, originOf(msg))
	return err
}

// originOf is where msg was read (partition -1 when not from
// KeyedSubscriber) and whether it was redriven from the dead-letter topic.
func originOf(msg *message.Message) projections.Origin {
	src := projections.Origin{Partition: -1}
	if mc := messageFrom(msg.Context()); mc != nil {
		src.Partition, src.Offset, src.Timestamp = mc.partition, mc.offset, mc.timestamp
	}
	src.Redriven = msg.Metadata.Get(RedrivenHeader) != ""
	return src
}

// decoded is an event decoded when its message was read (DecodeAhead), and
// what the consumer keeps about the message while it holds it: the
// subscriber hands the same value out again with every redelivery after a
// nack, so these fields outlive one attempt.
type decoded struct {
	env domain.Envelope
	err error
	// later: decoding panicked when the message was read; the handler
	// decodes it again, under the router's recoverer.
	later bool

	counted bool       // roomcast_events_consumed_total has counted the message
	typ     uint8      // 1 + its type label's index in typeLabels, once known (see typeLabel)
	retry   *waitEntry // set while the event fails transiently (retrying.go)
}

// typeLabels are the values of the type label: the contract's event types
// and "invalid".
var typeLabels = func() []string {
	labels := make([]string, 0, len(domain.EventTypes)+1)
	for _, t := range domain.EventTypes {
		labels = append(labels, string(t))
	}
	return append(labels, "invalid")
}()

// DecodeAhead returns KeyedSubscriberConfig.Prepare for roomcast's events:
// it decodes each payload when its message is read, refusing one longer
// than maxBytes (0: no limit) without parsing it; the handler then uses the
// result instead of decoding the payload itself.
func DecodeAhead(maxBytes int) func(payload []byte) any {
	return func(payload []byte) any {
		d := &decoded{}
		func() {
			defer func() {
				if recover() != nil {
					d.later = true
				}
			}()
			d.env, d.err = decodeLimited(payload, maxBytes)
		}()
		return d
	}
}

// decodeLimited is domain.Decode with EVENT_MAX_BYTES as the size limit.
func decodeLimited(payload []byte, maxBytes int) (domain.Envelope, error) {
	return domain.Decoder{MaxValueBytes: maxBytes}.Decode(payload)
}

// decode is msg's event and state: decoded when it was read (DecodeAhead),
// or now (then the state lasts for this attempt only).
func (h *handler) decode(msg *message.Message) *decoded {
	d := stateOf(msg)
	if d == nil {
		d = &decoded{}
		d.env, d.err = decodeLimited(msg.Payload, h.maxBytes)
	} else if d.later {
		d.env, d.err = decodeLimited(msg.Payload, h.maxBytes) // panics again: recoverPanics
		d.later = false
	}
	return d
}

// stateOf is the state DecodeAhead made for msg, or nil.
func stateOf(msg *message.Message) *decoded {
	d, _ := Prepared(msg.Context()).(*decoded)
	return d
}

// typeLabel is the message's type label: its event type, or for an invalid
// event the type it names when that is one of the contract's, else
// "invalid" (labels stay a small, fixed set).
func (d *decoded) typeLabel(payload []byte) string {
	if d.typ == 0 {
		var label string
		if d.err == nil && !d.later {
			label = string(d.env.Type)
		} else {
			label = sniffType(payload)
		}
		i := slices.Index(typeLabels, label)
		if i < 0 {
			i = len(typeLabels) - 1 // "invalid"
		}
		d.typ = uint8(i + 1)
	}
	return typeLabels[d.typ-1]
}

// sniffType is the type an invalid event names when that is one of the
// contract's, else "invalid".
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
// violation, an edit or delete of an unknown message, an event the store
// refuses, or a panic while handling (a bug that would otherwise block the
// partition forever).
func isPermanent(err error) bool {
	var p handlerPanic
	return domain.IsPermanent(err) || errors.As(err, &p)
}

// deadLetterReason is the reason label of a permanent error.
func deadLetterReason(err error) string {
	var p handlerPanic
	switch {
	case errors.As(err, &p):
		return "panic"
	case errors.Is(err, domain.ErrUnknownMessage):
		return "unknown_message"
	case errors.Is(err, domain.ErrUnstorable):
		return "unstorable"
	default:
		return "invalid"
	}
}

// deadLetterReasons are the values of the reason label.
var deadLetterReasons = []string{"invalid", "unknown_message", "unstorable", "panic"}

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
			return msgs, handlerPanic{value: rec.V}
		}
		return msgs, err
	}
}
