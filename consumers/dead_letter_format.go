package consumers

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
)

// DeadLetter is one message of the dead-letter topic, as written by the
// worker (deadLetters) or a replay (DeadLetterMessage).
type DeadLetter struct {
	Msg            *sarama.ConsumerMessage
	ID, Type       string // of the event, "-" for what its value lacks (SniffIDType)
	Reason         string // why it was dead-lettered
	DeadLetteredBy string // the handler that dead-lettered it ("project", "replay")
}

// ReadDeadLetter reads the event's id and type and the poison-queue headers of m.
func ReadDeadLetter(m *sarama.ConsumerMessage) DeadLetter {
	d := DeadLetter{Msg: m}
	d.ID, d.Type = SniffIDType(m.Value)
	for _, h := range m.Headers {
		switch string(h.Key) {
		case middleware.ReasonForPoisonedKey:
			d.Reason = string(h.Value)
		case middleware.PoisonedHandlerKey:
			d.DeadLetteredBy = string(h.Value)
		}
	}
	return d
}

// SniffIDType reads the id and type of a value that may break the contract
// ("-" for what it lacks).
func SniffIDType(value []byte) (id, typ string) {
	var head struct {
		ID   any `json:"id"`
		Type any `json:"type"`
	}
	_ = json.Unmarshal(value, &head)
	str := func(v any) string {
		switch v := v.(type) {
		case nil:
			return "-"
		case string:
			if v == "" {
				return "-"
			}
			return strings.ToValidUTF8(v, "?")
		default:
			return fmt.Sprint(v)
		}
	}
	return str(head.ID), str(head.Type)
}

// DeadLetterFilter chooses dead letters by id or reason substring.
type DeadLetterFilter struct {
	IDs    map[string]bool
	Reason string // a substring of the reason
	All    bool   // every dead letter, whatever IDs and Reason say
}

// Match says whether f chooses d. A filter that names nothing chooses
// nothing unless All.
func (f DeadLetterFilter) Match(d DeadLetter) bool {
	if f.All {
		return true
	}
	if len(f.IDs) > 0 && !f.IDs[d.ID] {
		return false
	}
	if f.Reason != "" && !strings.Contains(d.Reason, f.Reason) {
		return false
	}
	return len(f.IDs) > 0 || f.Reason != ""
}

// Choose is the dead letters of dls that f matches, each event once (the
// oldest of its dead letters), and how many repeated an event chosen
// already: an event is dead-lettered more than once by a replay, or by a
// redrive that failed again.
func (f DeadLetterFilter) Choose(dls []DeadLetter) (chosen []DeadLetter, repeats int) {
	seen := map[string]bool{}
	for _, d := range dls {
		if !f.Match(d) {
			continue
		}
		if d.ID != "-" && seen[d.ID] {
			repeats++
			continue
		}
		seen[d.ID] = true
		chosen = append(chosen, d)
	}
	return chosen, repeats
}

// DeadLetterMessage is m for the dead-letter topic dlqTopic as the worker
// writes it: key, value and headers unchanged, plus Watermill's poison-queue
// headers naming the reason, the topic m came from and the handler.
func DeadLetterMessage(dlqTopic, topic, handler string, m *sarama.ConsumerMessage, reason string) *sarama.ProducerMessage {
	replaced := []string{middleware.ReasonForPoisonedKey, middleware.PoisonedTopicKey, middleware.PoisonedHandlerKey}
	headers := make([]sarama.RecordHeader, 0, len(m.Headers)+len(replaced))
	for _, h := range m.Headers {
		if !slices.Contains(replaced, string(h.Key)) {
			headers = append(headers, *h)
		}
	}
	headers = append(headers,
		sarama.RecordHeader{Key: []byte(middleware.ReasonForPoisonedKey), Value: []byte(reason)},
		sarama.RecordHeader{Key: []byte(middleware.PoisonedTopicKey), Value: []byte(topic)},
		sarama.RecordHeader{Key: []byte(middleware.PoisonedHandlerKey), Value: []byte(handler)})
	pm := &sarama.ProducerMessage{Topic: dlqTopic, Value: sarama.ByteEncoder(m.Value), Headers: headers, Timestamp: m.Timestamp}
	if m.Key != nil {
		pm.Key = sarama.ByteEncoder(m.Key)
	}
	return pm
}

// redriveDropped are the headers a re-driven message loses: the
// dead-lettering ones, Watermill's message UUID and an earlier redrive's
// mark (RedriveMessage puts its own).
var redriveDropped = []string{middleware.ReasonForPoisonedKey, middleware.PoisonedTopicKey, middleware.PoisonedHandlerKey,
	middleware.PoisonedSubscriberKey, kafka.UUIDHeaderKey, RedrivenHeader}

// RedriveMessage is a dead letter back for the events topic: its key and
// value as they were, without the dead-lettering headers.
func RedriveMessage(topic string, d DeadLetter) *sarama.ProducerMessage {
	var headers []sarama.RecordHeader
	for _, h := range d.Msg.Headers {
		if !slices.Contains(redriveDropped, string(h.Key)) {
			headers = append(headers, *h)
		}
	}
	// The header marks it as re-driven: an edit then applies only if it is
	// not older than its message's state (projections/redrive.go).
	headers = append(headers, sarama.RecordHeader{Key: []byte(RedrivenHeader),
		Value: fmt.Appendf(nil, "%s/%d/%d", d.Msg.Topic, d.Msg.Partition, d.Msg.Offset)})
	pm := &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(d.Msg.Value), Headers: headers}
	if d.Msg.Key != nil {
		pm.Key = sarama.ByteEncoder(d.Msg.Key)
	}
	return pm
}
