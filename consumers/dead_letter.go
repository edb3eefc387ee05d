package consumers

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/prometheus/client_golang/prometheus"
)

// Backoff between attempts to publish one dead letter.
const (
	deadLetterFirstWait = 100 * time.Millisecond
	deadLetterMaxWait   = 30 * time.Second
)

// deadLetters is the router middleware that sends each message failing for
// good (isPermanent) to the dead-letter topic and acknowledges it only once
// the broker has the dead letter. A dead letter that cannot be published
// (too large for the topic, topic missing, not authorized, broker down) is
// tried again with backoff while its message stays unacknowledged: the
// later messages of its key wait, the partition's other keys go on, and
// roomcast_dead_letters_waiting and the dead_letter stall say so. Nothing is
// counted as dead-lettered before the broker acknowledged it, and nothing is
// dropped: when the message's context ends (rebalance) or the consumer
// stops, it gives up and the message is delivered again later.
//
// The dead letter is the message as consumed (key, value and headers) with
// Watermill's poison-queue headers added, as Watermill's PoisonQueue wrote
// them: the reason in middleware.ReasonForPoisonedKey, and the topic,
// handler and subscriber.
type deadLetters struct {
	producer *dlqProducer
	topic    string
	metrics  *consumerMetrics
	log      *slog.Logger
	list     *waitList
	stopping context.Context // ends when the consumer stops
}

func newDeadLetters(producer *dlqProducer, topic string, metrics *consumerMetrics, log *slog.Logger, stopping context.Context) *deadLetters {
	return &deadLetters{producer: producer, topic: topic, metrics: metrics, log: log, stopping: stopping,
		list: newWaitList(log, 0, waitText{
			unit:    "dead_letters",
			start:   "dead letters cannot be published; their events wait",
			summary: "dead letters still waiting to be published",
			cleared: "waiting dead letters published",
		})}
}

// Middleware dead-letters what h fails with for good. Success and transient
// errors pass through at the cost of one comparison.
func (dl *deadLetters) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		produced, err := h(msg)
		if err == nil || !isPermanent(err) {
			return produced, err
		}
		if err := dl.deadLetter(msg, err); err != nil {
			return nil, err
		}
		return nil, nil
	}
}

// errGivenUp is what a message whose dead letter was not published returns
// when its handler gives up: it is delivered again later. It matches
// context.Canceled, so the router does not log it as a failure.
var errGivenUp = fmt.Errorf("dead letter not published yet; the message is delivered again later: %w", context.Canceled)

// deadLetter publishes msg's dead letter for reason, retrying until the
// broker acknowledges it (nil) or the message's context ends or the
// consumer stops (errGivenUp).
func (dl *deadLetters) deadLetter(msg *message.Message, reason error) error {
	ctx := msg.Context()
	// A room's dead letters reach the topic in the room's order: the
	// earlier messages of the key are acked first (several of a room are
	// handled at once).
	turnFrom(ctx).waitEarlierAcked(ctx)
	if ctx.Err() != nil {
		return errGivenUp
	}
	headers := deadLetterHeaders(msg, reason)
	var key sarama.Encoder
	if k, ok := MessageKey(ctx); ok && k != nil {
		key = sarama.ByteEncoder(k)
	}
	// After a failure, also stop waiting when the consumer stops.
	waitCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(dl.stopping, cancel)()

	var entry *waitEntry
	sendCtx := ctx
	for wait := deadLetterFirstWait; ; wait = min(2*wait, deadLetterMaxWait) {
		// A fresh record each attempt: Sarama keeps using the one of a send
		// it was not waited for.
		pm := &sarama.ProducerMessage{Topic: dl.topic, Key: key, Value: sarama.ByteEncoder(msg.Payload), Headers: headers}
		err := dl.producer.send(sendCtx, pm)
		if err == nil {
			dl.published(msg, reason, entry)
			return nil
		}
		if waitCtx.Err() != nil {
			dl.release(entry)
			return errGivenUp
		}
		cause := publishFailureCause(err)
		dl.metrics.dlqFailures.WithLabelValues(cause).Inc()
		entry = dl.list.fail(entry, publishFailureText(cause, dl.topic), time.Now())
		if cause == "too_large" || cause == "missing_topic" {
			dl.producer.refresh()
		}
		t := time.NewTimer(randomized(wait, 0.3))
		select {
		case <-t.C:
		case <-waitCtx.Done():
			t.Stop()
			dl.release(entry)
			return errGivenUp
		}
		sendCtx = waitCtx
	}
}

func (dl *deadLetters) release(entry *waitEntry) {
	if entry != nil {
		dl.list.release(entry, time.Now())
	}
}

// published counts and logs a dead letter the broker acknowledged.
func (dl *deadLetters) published(msg *message.Message, reason error, entry *waitEntry) {
	var typ string
	if d := stateOf(msg); d != nil {
		typ = d.typeLabel(msg.Payload)
	} else {
		typ = sniffType(msg.Payload)
	}
	dl.metrics.deadLettered.WithLabelValues(typ, deadLetterReason(reason)).Inc()
	attrs := []any{slog.String("type", typ), slog.String("reason", reason.Error())}
	if p, ok := MessagePartition(msg.Context()); ok {
		off, _ := MessageOffset(msg.Context())
		attrs = append(attrs, slog.Int("partition", int(p)), slog.Int64("offset", off))
	}
	if entry != nil {
		attrs = append(attrs, slog.Duration("waited", time.Since(entry.first).Round(time.Millisecond)), slog.Int("failed_attempts", entry.failures))
		dl.list.release(entry, time.Now())
	}
	dl.log.Warn("event dead-lettered", attrs...)
}

// poisonKeys are the headers Watermill's PoisonQueue adds, replaced if the
// message carries them already.
var poisonKeys = []string{middleware.ReasonForPoisonedKey, middleware.PoisonedTopicKey, middleware.PoisonedHandlerKey, middleware.PoisonedSubscriberKey}

// deadLetterHeaders are the consumed message's headers (kafka.DefaultMarshaler's
// UUID header first, then its metadata by key) and the poison-queue headers.
func deadLetterHeaders(msg *message.Message, reason error) []sarama.RecordHeader {
	ctx := msg.Context()
	headers := make([]sarama.RecordHeader, 0, 1+len(msg.Metadata)+len(poisonKeys))
	headers = append(headers, sarama.RecordHeader{Key: []byte(kafka.UUIDHeaderKey), Value: []byte(msg.UUID)})
	for _, k := range slices.Sorted(maps.Keys(msg.Metadata)) {
		if k != kafka.UUIDHeaderKey && !slices.Contains(poisonKeys, k) {
			headers = append(headers, sarama.RecordHeader{Key: []byte(k), Value: []byte(msg.Metadata[k])})
		}
	}
	for _, kv := range [][2]string{
		{middleware.ReasonForPoisonedKey, reason.Error()},
		{middleware.PoisonedTopicKey, message.SubscribeTopicFromCtx(ctx)},
		{middleware.PoisonedHandlerKey, message.HandlerNameFromCtx(ctx)},
		{middleware.PoisonedSubscriberKey, message.SubscriberNameFromCtx(ctx)},
	} {
		headers = append(headers, sarama.RecordHeader{Key: []byte(kv[0]), Value: []byte(kv[1])})
	}
	return headers
}

// collectors are roomcast_dead_letters_waiting, read at scrape time.
func (dl *deadLetters) collectors() []prometheus.Collector {
	return []prometheus.Collector{prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "roomcast_dead_letters_waiting",
		Help: "Dead letters that could not be published yet; their messages stay unacknowledged and are tried again.",
	}, func() float64 { return float64(dl.list.state(time.Now()).n) })}
}

// stalls is the dead-letter stall, since the first failure of the oldest
// dead letter still waiting, if any.
func (dl *deadLetters) stalls(now time.Time) []Stall {
	s := dl.list.state(now)
	if s.n == 0 {
		return nil
	}
	return []Stall{{Cause: "dead_letter", Since: s.oldest,
		Detail: fmt.Sprintf("%d %s not published: %s", s.n, plural(s.n, "dead letter", "dead letters"), s.cause)}}
}
