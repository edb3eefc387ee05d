package testsupport

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/roomcast/roomcast/internal/localstack"
)

// envKafkaBrokers names an existing Kafka cluster (comma-separated host:port) to use instead of an in-process broker.
const envKafkaBrokers = "KAFKA_BROKERS"

// KafkaEnv is the Kafka a test should talk to.
type KafkaEnv struct {
	// Brokers are the bootstrap addresses.
	Brokers []string
	// Topics maps each requested topic name to the name actually created.
	Topics map[string]string
}

// Kafka returns a Kafka for this test with topics created (name -> partitions; below 1 means the broker default), all removed when the test ends.
//
// By default that is a fresh in-process broker on a random port, with the
// topics under their own names. When KAFKA_BROKERS is set it is that
// cluster, with each topic created as "<name>.<random>" so tests cannot see
// each other's messages: always address topics through KafkaEnv.Topics.
func Kafka(t testing.TB, topics map[string]int32) KafkaEnv {
	t.Helper()
	if v := os.Getenv(envKafkaBrokers); v != "" {
		var brokers []string
		for b := range strings.SplitSeq(v, ",") {
			if b = strings.TrimSpace(b); b != "" {
				brokers = append(brokers, b)
			}
		}
		return externalKafka(t, brokers, topics)
	}
	k, err := localstack.StartKafka(localstack.KafkaConfig{
		Addr:   "127.0.0.1:0",
		Topics: topics,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatalf("start in-process Kafka: %v", err)
	}
	t.Cleanup(k.Close)
	names := make(map[string]string, len(topics))
	for name := range topics {
		names[name] = name
	}
	return KafkaEnv{Brokers: k.Brokers(), Topics: names}
}

// externalKafka creates uniquely named topics on a real cluster, waits until
// their partitions have leaders, and deletes them when the test ends.
func externalKafka(t testing.TB, brokers []string, topics map[string]int32) KafkaEnv {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.ClientID = "roomcast-testsupport"
	cfg.Admin.Timeout = 30 * time.Second
	admin, err := sarama.NewClusterAdmin(brokers, cfg)
	if err != nil {
		t.Fatalf("connect to %s=%s: %v", envKafkaBrokers, strings.Join(brokers, ","), err)
	}
	suffix := randomSuffix()
	names := make(map[string]string, len(topics))
	t.Cleanup(func() {
		for _, actual := range names {
			if err := admin.DeleteTopic(actual); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
				t.Logf("testsupport: delete topic %s: %v", actual, err)
			}
		}
		_ = admin.Close()
	})
	for _, name := range slices.Sorted(maps.Keys(topics)) {
		partitions := topics[name]
		if partitions < 1 {
			partitions = -1
		}
		actual := name + "." + suffix
		detail := &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: -1}
		if err := admin.CreateTopic(actual, detail, false); err != nil {
			t.Fatalf("create topic %s (for %s) on %s: %v", actual, name, envKafkaBrokers, err)
		}
		names[name] = actual
	}
	if err := waitForLeaders(admin, slices.Collect(maps.Values(names)), 30*time.Second); err != nil {
		t.Fatalf("topics on %s: %v", envKafkaBrokers, err)
	}
	return KafkaEnv{Brokers: brokers, Topics: maps.Clone(names)}
}

// waitForLeaders polls metadata until every partition of topics has a leader.
func waitForLeaders(admin sarama.ClusterAdmin, topics []string, timeout time.Duration) error {
	if len(topics) == 0 {
		return nil
	}
	deadline := time.Now().Add(timeout)
	for {
		md, err := admin.DescribeTopics(topics)
		if err == nil {
			err = leadersReady(md)
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("partitions without a leader after %v: %w", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func leadersReady(md []*sarama.TopicMetadata) error {
	for _, m := range md {
		if !errors.Is(m.Err, sarama.ErrNoError) {
			return fmt.Errorf("topic %s: %w", m.Name, m.Err)
		}
		if len(m.Partitions) == 0 {
			return fmt.Errorf("topic %s: no partitions yet", m.Name)
		}
		for _, p := range m.Partitions {
			if p.Leader < 0 {
				return fmt.Errorf("topic %s partition %d: no leader", m.Name, p.ID)
			}
		}
	}
	return nil
}
