package consumers_test

import (
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/roomcast/roomcast/consumers"
)

func headerOf(pm *sarama.ProducerMessage, key string) (string, int) {
	v, n := "", 0
	for _, h := range pm.Headers {
		if string(h.Key) == key {
			v, n = string(h.Value), n+1
		}
	}
	return v, n
}

// asConsumed is pm as a consumer reads it back from partition/offset.
func asConsumed(pm *sarama.ProducerMessage, partition int32, offset int64) *sarama.ConsumerMessage {
	m := &sarama.ConsumerMessage{Topic: pm.Topic, Partition: partition, Offset: offset, Timestamp: pm.Timestamp}
	if pm.Key != nil {
		m.Key, _ = pm.Key.Encode()
	}
	m.Value, _ = pm.Value.Encode()
	for _, h := range pm.Headers {
		m.Headers = append(m.Headers, &sarama.RecordHeader{Key: h.Key, Value: h.Value})
	}
	return m
}

// A replay's dead letter carries the event as consumed plus Watermill's
// poison-queue headers (replacing older ones), reads back as what it says,
// and a redrive of it restores the event without them, marked as re-driven.
func TestDeadLetterFormatRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	consumed := &sarama.ConsumerMessage{Topic: "chat.events", Partition: 3, Offset: 41, Timestamp: at,
		Key: []byte("room-1"), Value: []byte(`{"id":"e-1","type":"message.created"}`),
		Headers: []*sarama.RecordHeader{
			{Key: []byte("traceparent"), Value: []byte("00-abc")},
			{Key: []byte("reason_poisoned"), Value: []byte("an older reason")},
		}}
	pm := consumers.DeadLetterMessage("chat.events.dlq", "chat.events", "replay", consumed, "invalid event: data.text missing")
	if pm.Topic != "chat.events.dlq" || !pm.Timestamp.Equal(at) {
		t.Errorf("dead letter to %s at %v, want chat.events.dlq at %v", pm.Topic, pm.Timestamp, at)
	}
	for key, want := range map[string]string{"reason_poisoned": "invalid event: data.text missing",
		"topic_poisoned": "chat.events", "handler_poisoned": "replay", "traceparent": "00-abc"} {
		if got, n := headerOf(pm, key); got != want || n != 1 {
			t.Errorf("header %s = %q (%d times), want %q once", key, got, n, want)
		}
	}

	d := consumers.ReadDeadLetter(asConsumed(pm, 0, 7))
	if d.ID != "e-1" || d.Type != "message.created" || d.Reason != "invalid event: data.text missing" || d.DeadLetteredBy != "replay" {
		t.Errorf("read back %+v", d)
	}
	f := consumers.DeadLetterFilter{Reason: "data.text"}
	if chosen, repeats := f.Choose([]consumers.DeadLetter{d, d}); len(chosen) != 1 || repeats != 1 {
		t.Errorf("Choose of a dead letter twice: %d chosen, %d repeats; want 1 and 1", len(chosen), repeats)
	}
	if (consumers.DeadLetterFilter{}).Match(d) {
		t.Error("an empty filter matches; want it to choose nothing")
	}

	back := consumers.RedriveMessage("chat.events", d)
	if back.Topic != "chat.events" {
		t.Errorf("redrive to %s", back.Topic)
	}
	for _, key := range []string{"reason_poisoned", "topic_poisoned", "handler_poisoned"} {
		if _, n := headerOf(back, key); n != 0 {
			t.Errorf("redriven message keeps header %s", key)
		}
	}
	if got, _ := headerOf(back, "traceparent"); got != "00-abc" {
		t.Errorf("traceparent = %q, want it kept", got)
	}
	if got, _ := headerOf(back, consumers.RedrivenHeader); got != "chat.events.dlq/0/7" {
		t.Errorf("%s = %q, want chat.events.dlq/0/7", consumers.RedrivenHeader, got)
	}
	if id, typ := consumers.SniffIDType([]byte(`{"id":7}`)); id != "7" || typ != "-" {
		t.Errorf("SniffIDType = %q, %q; want 7 and -", id, typ)
	}
}
