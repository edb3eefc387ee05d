package localstack_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/roomcast/roomcast/internal/localstack"
)

func startKafka(t *testing.T, cfg localstack.KafkaConfig) *localstack.Kafka {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	k, err := localstack.StartKafka(cfg)
	if err != nil {
		t.Fatalf("StartKafka: %v", err)
	}
	t.Cleanup(k.Close)
	return k
}

func saramaConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.ClientID = "localstack-test"
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Idempotent = true
	cfg.Net.MaxOpenRequests = 1
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Metadata.Retry.Backoff = 50 * time.Millisecond
	return cfg
}

// produce sends n keyed messages, valued prefix-i, with a SyncProducer and returns the
// partitions they went to.
func produce(t *testing.T, brokers []string, topic, prefix string, n int) map[int32]int {
	t.Helper()
	p, err := sarama.NewSyncProducer(brokers, saramaConfig())
	if err != nil {
		t.Fatalf("NewSyncProducer: %v", err)
	}
	defer p.Close()
	partitions := map[int32]int{}
	for i := range n {
		part, _, err := p.SendMessage(&sarama.ProducerMessage{
			Topic: topic,
			Key:   sarama.StringEncoder("room-" + strconv.Itoa(i%10)),
			Value: sarama.StringEncoder(prefix + "-" + strconv.Itoa(i)),
		})
		if err != nil {
			t.Fatalf("SendMessage %d: %v", i, err)
		}
		partitions[part]++
	}
	return partitions
}

// collector is a sarama.ConsumerGroupHandler that marks every message and
// stops the consumer once it has seen want distinct values.
type collector struct {
	want   int
	cancel context.CancelFunc
	mu     sync.Mutex
	seen   map[string]string // value -> key
}

func (*collector) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (*collector) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (c *collector) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			s.MarkMessage(m, "")
			c.mu.Lock()
			c.seen[string(m.Value)] = string(m.Key)
			if len(c.seen) >= c.want {
				c.cancel()
			}
			c.mu.Unlock()
		case <-s.Context().Done():
			return nil
		}
	}
}

// consume reads until want distinct messages arrived with a consumer group
// starting from the oldest offset, and returns value -> key.
func consume(t *testing.T, brokers []string, topic, group string, want int) map[string]string {
	t.Helper()
	cg, err := sarama.NewConsumerGroup(brokers, group, saramaConfig())
	if err != nil {
		t.Fatalf("NewConsumerGroup: %v", err)
	}
	defer cg.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	h := &collector{want: want, cancel: cancel, seen: map[string]string{}}
	for ctx.Err() == nil {
		if err := cg.Consume(ctx, []string{topic}, h); err != nil && !errors.Is(err, sarama.ErrClosedConsumerGroup) {
			t.Fatalf("Consume: %v", err)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.seen) < want {
		t.Fatalf("consumed %d distinct messages, want %d", len(h.seen), want)
	}
	return h.seen
}

func TestKafkaSaramaProduceConsumeGroup(t *testing.T) {
	k := startKafka(t, localstack.KafkaConfig{
		Addr:   "127.0.0.1:0",
		Topics: map[string]int32{"chat.events": 12, "chat.events.dlq": 1},
	})
	brokers := k.Brokers()
	if len(brokers) != 1 {
		t.Fatalf("Brokers() = %v, want one", brokers)
	}

	partitions := produce(t, brokers, "chat.events", "message", 100)
	if len(partitions) < 2 {
		t.Errorf("100 messages over 10 keys went to partitions %v: keys do not spread", partitions)
	}
	seen := consume(t, brokers, "chat.events", "localstack-test", 100)
	for i := range 100 {
		v := "message-" + strconv.Itoa(i)
		if key, ok := seen[v]; !ok || key != "room-"+strconv.Itoa(i%10) {
			t.Fatalf("message %q: key %q, seen %v", v, key, ok)
		}
	}

	admin, err := sarama.NewClusterAdmin(brokers, saramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	md, err := admin.DescribeTopics([]string{"chat.events", "chat.events.dlq"})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range md {
		want := map[string]int{"chat.events": 12, "chat.events.dlq": 1}[m.Name]
		if len(m.Partitions) != want {
			t.Errorf("topic %s has %d partitions, want %d", m.Name, len(m.Partitions), want)
		}
	}
	// CreateTopics works through the protocol too.
	if err := admin.CreateTopic("created.by.admin", &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: -1}, false); err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}
	produce(t, brokers, "created.by.admin", "m", 1)
}

func TestKafkaNoAutoCreateByDefault(t *testing.T) {
	k := startKafka(t, localstack.KafkaConfig{})
	cfg := saramaConfig()
	cfg.Producer.Retry.Max = 1
	cfg.Metadata.Retry.Max = 1
	p, err := sarama.NewSyncProducer(k.Brokers(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, _, err = p.SendMessage(&sarama.ProducerMessage{Topic: "no.such.topic", Value: sarama.StringEncoder("x")})
	if !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		t.Fatalf("producing to an unknown topic: err = %v, want ErrUnknownTopicOrPartition", err)
	}

	auto := startKafka(t, localstack.KafkaConfig{AllowAutoTopicCreation: true})
	produce(t, auto.Brokers(), "auto.created", "m", 1)
	if n := len(auto.Cluster().PartitionInfos("auto.created")); n != 10 {
		t.Errorf("auto-created topic has %d partitions, want kfake's default 10", n)
	}
}

func TestKafkaFixedAddrAndDataDir(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	addr := "localhost:" + strconv.Itoa(port)
	dir := t.TempDir()
	cfg := localstack.KafkaConfig{Addr: addr, DataDir: dir, Topics: map[string]int32{"kept": 4}}

	k, err := localstack.StartKafka(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := k.Brokers(), fmt.Sprintf("127.0.0.1:%d", port); len(got) != 1 || got[0] != want {
		k.Close()
		t.Fatalf("Brokers() = %v, want [%s]", got, want)
	}
	produce(t, []string{addr}, "kept", "before", 20)
	consume(t, []string{addr}, "kept", "g", 20) // commits offsets for group g
	k.Close()
	k.Close() // idempotent

	// Restart on the same address and DataDir, with one more topic configured.
	cfg.Topics = map[string]int32{"kept": 4, "added": 2}
	k = startKafka(t, cfg)
	if n := len(k.Cluster().PartitionInfos("added")); n != 2 {
		t.Fatalf("topic added after restart has %d partitions, want 2", n)
	}
	var total int64
	for _, p := range k.Cluster().PartitionInfos("kept") {
		total += p.HighWatermark
	}
	if total != 20 {
		t.Fatalf("kept holds %d records after restart, want 20", total)
	}
	produce(t, []string{addr}, "kept", "after", 5)
	// Group g resumes after its committed offsets: it sees only the 5 new ones.
	seen := consume(t, []string{addr}, "kept", "g", 5)
	for v := range seen {
		if !strings.HasPrefix(v, "after-") {
			t.Fatalf("group g after restart saw %q: committed offsets were lost", v)
		}
	}
}
