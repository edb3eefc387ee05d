package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/roomcast/roomcast/consumers"
)

// Topics that accept messages above Sarama's 1 MiB default: a replay
// dead-letters a 1.5 MB value the events topic took (its dead-letter
// producer is sized to the dead-letter topic's max.message.bytes), and
// `dlq redrive` sends it back (sized to the events topic's).
func TestReplayDeadLettersMessagesAboveSaramasDefaultLimit(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	const limit = 3 << 20
	kc := consumers.KafkaConfig{Brokers: s.brokers}
	admin, err := sarama.NewClusterAdmin(s.brokers, kc.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = admin.Close() }()
	for _, topic := range []string{s.topic, s.dlq} {
		v := "3145728"
		if err := admin.AlterConfig(sarama.TopicResource, topic, map[string]*string{"max.message.bytes": &v}, false); err != nil {
			t.Fatalf("raise max.message.bytes of %s: %v", topic, err)
		}
	}
	pc := kc.ProducerConfig()
	pc.Producer.MaxMessageBytes = limit
	producer, err := sarama.NewSyncProducer(s.brokers, pc)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = producer.Close() }()
	big := bytes.Repeat([]byte("x"), 1500*1000) // not JSON: dead-lettered as invalid
	if _, _, err := producer.SendMessage(&sarama.ProducerMessage{Topic: s.topic, Key: sarama.StringEncoder("big-room"), Value: sarama.ByteEncoder(big)}); err != nil {
		t.Fatalf("produce 1.5 MB: %v", err)
	}

	r := s.cmd(t.Context(), nil, "replay", "kafka", "-from", "earliest", "-live-group", "-")
	if r.err != nil {
		t.Fatalf("replay: %v\n%s", r.err, r.stdout)
	}
	if !strings.Contains(r.stdout, "dead-lettered 1 (invalid 1") {
		t.Errorf("replay summary:\n%s", r.stdout)
	}
	dl := readTopic(t, s.brokers, s.dlq, 1, 60*time.Second)
	if !bytes.Equal(dl[0].Value, big) {
		t.Errorf("the dead letter holds %d bytes, want the %d of the message", len(dl[0].Value), len(big))
	}
	rd := s.cmd(t.Context(), nil, "dlq", "redrive", "-all")
	if rd.err != nil || !strings.Contains(rd.stdout, "sent 1 dead letters") {
		t.Errorf("redrive of the 1.5 MB dead letter: %v\n%s", rd.err, rd.stdout)
	}
}
