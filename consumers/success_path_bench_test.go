package consumers

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/projections"
)

type nopProjector struct{}

func (nopProjector) Project(context.Context, domain.Envelope, projections.Origin) (projections.Outcome, error) {
	return projections.Applied, nil
}

// BenchmarkSuccessPath is what the consumer's middleware chain and handler
// cost an event that succeeds at once, the projection left out: the
// router's chain as New builds it, over a message whose context is as deep
// as the router makes it.
func BenchmarkSuccessPath(b *testing.B) {
	h := &handler{projector: nopProjector{}, log: slog.New(slog.DiscardHandler), metrics: newConsumerMetrics(nil), maxBytes: DefaultMaxEventBytes}
	dead := newDeadLetters(nil, "dlq", h.metrics, h.log, context.Background())
	tracked := newRetrying(h.log, 5*time.Second)
	retry := transientRetry(5 * time.Second)
	handle := func(msg *message.Message) ([]*message.Message, error) { return nil, h.Handle(msg) }
	chain := SettleKeyed(dead.Middleware(retryAfterFailure(retry, nil)(tracked.track(h.recoverPanics(handle)))))
	payload := chattest.MessageCreated("room-1", "m-1", "hello").JSON()
	d := DecodeAhead(DefaultMaxEventBytes)(payload)
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), preparedCtxKey{}, d))
	defer cancel()
	for _, k := range []string{"handler", "subscriber", "topic"} {
		ctx = context.WithValue(ctx, &k, k)
	}
	msg := message.NewMessage("", payload)
	msg.SetContext(ctx)
	b.ReportAllocs()
	for b.Loop() {
		d.(*decoded).counted = false // each message is counted once
		if _, err := chain(msg); err != nil {
			b.Fatal(err)
		}
	}
}
