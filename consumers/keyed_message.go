package consumers

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
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
	case kafkaCtxKeys.partition:
		return c.partition
	case kafkaCtxKeys.offset:
		return c.offset
	case kafkaCtxKeys.timestamp:
		return c.timestamp
	case kafkaCtxKeys.key:
		return c.key
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

// kafkaCtxKeys are the context keys that watermill-kafka's exported getters
// (kafka.MessagePartitionFromCtx and the others) read. Its setters are
// unexported, so the keys are learnt by asking each getter with a context
// that records the key it looks up; kafkaCtxKeysErr checks the result.
var kafkaCtxKeys = struct{ partition, offset, timestamp, key any }{
	partition: probeCtxKey(func(ctx context.Context) { kafka.MessagePartitionFromCtx(ctx) }),
	offset:    probeCtxKey(func(ctx context.Context) { kafka.MessagePartitionOffsetFromCtx(ctx) }),
	timestamp: probeCtxKey(func(ctx context.Context) { kafka.MessageTimestampFromCtx(ctx) }),
	key:       probeCtxKey(func(ctx context.Context) { kafka.MessageKeyFromCtx(ctx) }),
}

// ctxKeyProbe is a context that records the keys looked up in it.
type ctxKeyProbe struct {
	context.Context
	keys []any
}

func (p *ctxKeyProbe) Value(key any) any {
	p.keys = append(p.keys, key)
	return nil
}

// probeCtxKey returns the one key get looks up, or nil.
func probeCtxKey(get func(context.Context)) any {
	p := &ctxKeyProbe{Context: context.Background()}
	get(p)
	if len(p.keys) != 1 || p.keys[0] == nil || !reflect.TypeOf(p.keys[0]).Comparable() {
		return nil
	}
	return p.keys[0]
}

// kafkaCtxKeysErr reports whether values stored under kafkaCtxKeys read back
// through watermill-kafka's getters.
var kafkaCtxKeysErr = sync.OnceValue(func() error {
	k := kafkaCtxKeys
	if k.partition == nil || k.offset == nil || k.timestamp == nil || k.key == nil {
		return errors.New("keyed subscriber: cannot learn watermill-kafka's message context keys")
	}
	ts := time.Unix(1700000000, 0)
	ctx := context.WithValue(context.Background(), k.partition, int32(7))
	ctx = context.WithValue(ctx, k.offset, int64(42))
	ctx = context.WithValue(ctx, k.timestamp, ts)
	ctx = context.WithValue(ctx, k.key, []byte("room-1"))
	p, ok1 := kafka.MessagePartitionFromCtx(ctx)
	o, ok2 := kafka.MessagePartitionOffsetFromCtx(ctx)
	t, ok3 := kafka.MessageTimestampFromCtx(ctx)
	key, ok4 := kafka.MessageKeyFromCtx(ctx)
	if !ok1 || !ok2 || !ok3 || !ok4 || p != 7 || o != 42 || !t.Equal(ts) || string(key) != "room-1" {
		return errors.New("keyed subscriber: watermill-kafka's message context getters do not read the learnt keys")
	}
	return nil
})
