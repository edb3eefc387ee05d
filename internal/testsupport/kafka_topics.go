package testsupport

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// KafkaTopics creates topics on a Kafka while a test runs, for tests that
// learn their topics' names only as they go (Watermill's behaviour suite
// names one per test); Kafka returns the broker and creates nothing by
// itself, as neither the in-process broker nor a real cluster is relied on to
// create topics on first use.
type KafkaTopics struct {
	admin      sarama.ClusterAdmin
	partitions int32

	mu      sync.Mutex
	created map[string]bool
}

// NewKafkaTopics connects to brokers; every topic it creates has partitions
// partitions and is deleted when the test ends.
func NewKafkaTopics(t testing.TB, brokers []string, partitions int32) *KafkaTopics {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.ClientID = "roomcast-testsupport"
	cfg.Admin.Timeout = 30 * time.Second
	admin, err := sarama.NewClusterAdmin(brokers, cfg)
	if err != nil {
		t.Fatalf("connect to Kafka at %v: %v", brokers, err)
	}
	k := &KafkaTopics{admin: admin, partitions: partitions, created: make(map[string]bool)}
	t.Cleanup(func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		for name := range k.created {
			if err := admin.DeleteTopic(name); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
				t.Logf("testsupport: delete topic %s: %v", name, err)
			}
		}
		_ = admin.Close()
	})
	return k
}

// Create creates topic unless this KafkaTopics already did, and waits until
// its partitions have leaders. It is safe for concurrent use.
func (k *KafkaTopics) Create(topic string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.created[topic] {
		return nil
	}
	detail := &sarama.TopicDetail{NumPartitions: k.partitions, ReplicationFactor: -1}
	if err := k.admin.CreateTopic(topic, detail, false); err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	k.created[topic] = true
	return waitForLeaders(k.admin, []string{topic}, 30*time.Second)
}
