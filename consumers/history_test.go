package consumers_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/roomcast/roomcast/consumers"
)

// A partition whose last offsets below the high-water mark are transaction
// markers (control records, which no consumer delivers) ends once a look
// at the broker shows that nothing readable is left: the read returns every
// message and neither waits for the markers nor reports waiting.
func TestHistoryEndsBeforeTransactionMarkers(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.Ports(0), kfake.SeedTopics(2, "chat.events"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	brokers := cluster.ListenAddrs()

	// Three transactions of three messages on each partition: each commit
	// writes a marker after its messages, the last one just below the
	// high-water mark.
	pc := sarama.NewConfig()
	pc.Producer.Idempotent = true
	pc.Producer.RequiredAcks = sarama.WaitForAll
	pc.Producer.Return.Successes = true
	pc.Producer.Transaction.ID = "history-test"
	pc.Net.MaxOpenRequests = 1
	pc.Producer.Partitioner = sarama.NewManualPartitioner
	producer, err := sarama.NewSyncProducer(brokers, pc)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = producer.Close() }()
	sent := 0
	for tx := range 3 {
		if err := producer.BeginTxn(); err != nil {
			t.Fatal(err)
		}
		for p := range int32(2) {
			for i := range 3 {
				v := fmt.Sprintf("tx %d message %d", tx, i)
				if _, _, err := producer.SendMessage(&sarama.ProducerMessage{Topic: "chat.events", Partition: p, Value: sarama.StringEncoder(v)}); err != nil {
					t.Fatal(err)
				}
				sent++
			}
		}
		if err := producer.CommitTxn(); err != nil {
			t.Fatal(err)
		}
	}

	var (
		mu      sync.Mutex
		waits   []consumers.HistoryWait
		got     int
		offsets = map[int32]int64{}
	)
	h, err := consumers.OpenHistory(consumers.HistoryConfig{
		Kafka: consumers.KafkaConfig{Brokers: brokers}, Topic: "chat.events", IdleTimeout: 200 * time.Millisecond,
		Waiting: func(w consumers.HistoryWait) { mu.Lock(); waits = append(waits, w); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = h.Close() }()
	for _, s := range h.Spans() {
		// 9 messages and 3 markers per partition.
		if s.End-s.Start != 12 {
			t.Fatalf("partition %d spans %d..%d, want 12 offsets (9 messages, 3 markers)", s.Partition, s.Start, s.End)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	err = h.Read(ctx, func(msgs []*sarama.ConsumerMessage) error {
		for _, m := range msgs {
			if m.Offset <= offsets[m.Partition]-1 {
				return fmt.Errorf("partition %d: offset %d after %d", m.Partition, m.Offset, offsets[m.Partition]-1)
			}
			offsets[m.Partition] = m.Offset + 1
			got++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if got != sent {
		t.Errorf("read %d messages, want %d", got, sent)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(waits) > 0 {
		t.Errorf("the read reported waiting although nothing readable was left: %+v", waits)
	}
}
