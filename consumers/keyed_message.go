package consumers

import (
	"context"
	"time"
)

// messageCtx is the context of a message KeyedSubscriber hands out: where
// the message was read (partition, offset, timestamp, key), its turn and
// what Prepare made of it, in one node over the subscription's context
// rather than a context.WithValue layer each (one allocation per message,
// and one lookup instead of a walk).
type messageCtx struct {
	context.Context
	partition int32
	offset    int64
	timestamp time.Time
	key       []byte
	turn      *turn
	prepared  any // KeyedSubscriberConfig.Prepare's result
	part      *keyedPartition
	rec       *keyedRecord
}

// messageCtxKey is the key under which a messageCtx answers with itself.
type messageCtxKey struct{}

type preparedCtxKey struct{}

func (c *messageCtx) Value(k any) any {
	switch k {
	case turnCtxKey{}:
		return c.turn
	case preparedCtxKey{}:
		return c.prepared
	case messageCtxKey{}:
		return c
	}
	return c.Context.Value(k)
}

// messageFrom returns the messageCtx that ctx is (or descends from), or nil.
func messageFrom(ctx context.Context) *messageCtx {
	mc, _ := ctx.Value(messageCtxKey{}).(*messageCtx)
	return mc
}

// MessagePartition is the Kafka partition of the message KeyedSubscriber
// handed out with ctx (or a context descending from it); false otherwise.
func MessagePartition(ctx context.Context) (int32, bool) {
	if mc := messageFrom(ctx); mc != nil {
		return mc.partition, true
	}
	return 0, false
}

// MessageOffset is the Kafka offset of the message KeyedSubscriber handed
// out with ctx (or a context descending from it); false otherwise.
func MessageOffset(ctx context.Context) (int64, bool) {
	if mc := messageFrom(ctx); mc != nil {
		return mc.offset, true
	}
	return 0, false
}

// MessageTimestamp is the Kafka timestamp of the message KeyedSubscriber
// handed out with ctx (or a context descending from it); false otherwise.
func MessageTimestamp(ctx context.Context) (time.Time, bool) {
	if mc := messageFrom(ctx); mc != nil {
		return mc.timestamp, true
	}
	return time.Time{}, false
}

// MessageKey is the Kafka key of the message KeyedSubscriber handed out
// with ctx (or a context descending from it), nil for a record without a
// key; false when ctx is not such a message's.
func MessageKey(ctx context.Context) ([]byte, bool) {
	if mc := messageFrom(ctx); mc != nil {
		return mc.key, true
	}
	return nil, false
}

// prepare runs f, and if it panics returns nil, as if there were no Prepare:
// the handler then does that work itself, under the router's recoverer and
// poison queue, instead of the panic stopping the partition's consumption.
func prepare(f func([]byte) any, payload []byte) (v any) {
	defer func() {
		if recover() != nil {
			v = nil
		}
	}()
	return f(payload)
}

// Prepared is what KeyedSubscriberConfig.Prepare returned for the message
// whose context ctx is (or descends from), or nil.
func Prepared(ctx context.Context) any { return ctx.Value(preparedCtxKey{}) }
