package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/roomcast/roomcast/consumers"
	"github.com/roomcast/roomcast/internal/chattest"
)

// hostileMsg is a message the broker accepts and roomcast must dead-letter
// (with a reason) rather than store, retry forever or drop.
type hostileMsg struct {
	name      string
	key       string
	value     []byte
	partition int32
	eventID   string // the CloudEvents id, when it is an event
}

// hostileMessages builds the hostile messages, each keyed into a
// partition of its own among the topic's partitions.
//
//   - an event whose data carries an unknown field holding 1e1000000 (valid
//     JSON; Postgres' numeric cannot hold it: SQLSTATE 22003)
//   - a non-JSON value of about 1 MB (the broker takes it; a dead letter
//     carrying it plus headers exceeds Sarama's default 1 MiB producer limit)
//   - an event whose source is 64 KiB long
//   - an event whose id holds control characters
func hostileMessages(t *testing.T, topic string, partitions int32) []hostileMsg {
	t.Helper()
	used := map[int32]bool{}
	part := sarama.NewMurmur2Partitioner(topic)
	keyFor := func(name string) (string, int32) {
		for i := range 10000 {
			key := fmt.Sprintf("chaos-hostile-%s-%d", name, i)
			p, err := part.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(key)}, partitions)
			if err != nil {
				t.Fatal(err)
			}
			if !used[p] {
				used[p] = true
				return key, p
			}
		}
		t.Fatal("no key for a partition of its own")
		return "", 0
	}
	var out []hostileMsg
	event := func(name string, build func(room string) *chattest.Event) {
		room, p := keyFor(name)
		e := build(room)
		out = append(out, hostileMsg{name: name, key: room, value: e.JSON(), partition: p, eventID: e.ID})
	}
	event("huge-number", func(room string) *chattest.Event {
		return chattest.MessageCreated(room, room+"-m1", "a valid message with an unknown field").
			With("score", json.Number("1e1000000"))
	})
	key, p := keyFor("big")
	// 1,048,400 bytes: the record fits the topic's default limit (1 MiB plus
	// 12 bytes of overhead, message.max.bytes), its dead letter's headers
	// take it past Sarama's default producer limit (1 MiB).
	big := append([]byte("not JSON: "), bytes.Repeat([]byte("0123456789abcdef"), (bigHostile-10)/16)...)
	big = append(big, bytes.Repeat([]byte("x"), bigHostile-len(big))...)
	out = append(out, hostileMsg{name: "1 MB non-JSON", key: key, value: big, partition: p})
	event("long-source", func(room string) *chattest.Event {
		e := chattest.MessageCreated(room, room+"-m1", "from a long source")
		e.Extra = map[string]any{"source": "/" + strings.Repeat("s", 64<<10)}
		return e
	})
	event("control-id", func(room string) *chattest.Event {
		return chattest.MessageCreated(room, room+"-m1", "an id with control characters").
			WithID("evt-\x01\x07\x1b[2J-" + room)
	})
	return out
}

const bigHostile = 1_048_400

// allowBigDeadLetters raises the DLQ topic's max.message.bytes to 2 MiB, as
// an operator sizes a dead-letter topic above its source topic: a dead
// letter is the message plus headers, so with equal limits a message near
// the limit could never be dead-lettered as it is.
func (s *stack) allowBigDeadLetters() {
	s.t.Helper()
	admin, err := sarama.NewClusterAdmin(s.brokers, sarama.NewConfig())
	if err != nil {
		s.t.Fatal(err)
	}
	defer func() { _ = admin.Close() }()
	v := "2097152"
	err = admin.IncrementalAlterConfig(sarama.TopicResource, s.dlq, map[string]sarama.IncrementalAlterConfigsEntry{
		"max.message.bytes": {Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &v},
	}, false)
	if err != nil {
		s.t.Fatalf("set max.message.bytes of %s: %v", s.dlq, err)
	}
}

// produceHostile sends the hostile messages with a producer allowed to
// send ~1 MB values (the broker's limit is 1 MiB plus overhead).
func (s *stack) produceHostile(msgs []hostileMsg) {
	s.t.Helper()
	cfg := consumers.KafkaConfig{Brokers: s.brokers}.ProducerConfig()
	cfg.Producer.MaxMessageBytes = 2 << 20
	p, err := sarama.NewSyncProducer(s.brokers, cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	for _, m := range msgs {
		part, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: s.topic, Key: sarama.StringEncoder(m.key), Value: sarama.ByteEncoder(m.value)})
		if err != nil {
			s.t.Fatalf("produce hostile %s (%d bytes): %v", m.name, len(m.value), err)
		}
		if part != m.partition {
			s.t.Fatalf("hostile %s went to partition %d, want %d", m.name, part, m.partition)
		}
	}
}

// checkHostileDeadLettered asserts that each hostile message reached the
// DLQ unchanged with a one-line reason, that nothing else did, and that
// none of them was stored.
func (s *stack) checkHostileDeadLettered(msgs []hostileMsg) {
	t := s.t
	t.Helper()
	n := topicSize(t, s.brokers, s.dlq)
	var dead []*sarama.ConsumerMessage
	if n > 0 {
		dead = readTopic(t, s.brokers, s.dlq, int(n), 60*time.Second)
	}
	byKey := map[string]hostileMsg{}
	for _, m := range msgs {
		byKey[m.key] = m
	}
	seen := map[string]int{}
	for _, d := range dead {
		m, ok := byKey[string(d.Key)]
		if !ok {
			t.Errorf("a message that is not hostile was dead-lettered: key %q, %d bytes", d.Key, len(d.Value))
			continue
		}
		seen[m.key]++
		if !bytes.Equal(d.Value, m.value) {
			t.Errorf("hostile %s: dead letter value changed (%d bytes, sha256 %x; sent %d bytes, %x)",
				m.name, len(d.Value), sha256.Sum256(d.Value), len(m.value), sha256.Sum256(m.value))
		}
		reason := ""
		for _, h := range d.Headers {
			if string(h.Key) == "reason_poisoned" {
				reason = string(h.Value)
			}
		}
		if reason == "" || strings.Contains(reason, "\n") || len(reason) > 1000 {
			t.Errorf("hostile %s: reason_poisoned %q, want one short line", m.name, reason)
		}
		if seen[m.key] == 1 {
			t.Logf("hostile %-13s -> dead letter, reason_poisoned %.160q", m.name, reason)
		}
	}
	for _, m := range msgs {
		switch seen[m.key] {
		case 0:
			t.Errorf("hostile %s (partition %d, %d bytes) was not dead-lettered", m.name, m.partition, len(m.value))
		case 1:
		default:
			t.Logf("hostile %s dead-lettered %d times (a worker killed before committing its offset)", m.name, seen[m.key])
		}
		if n, err := s.count(`SELECT count(*) FROM events WHERE room_id = $1 OR id = $2`, m.key, m.eventID); err != nil || n != 0 {
			t.Errorf("hostile %s: %d events stored (%v), want none", m.name, n, err)
		}
	}
}
