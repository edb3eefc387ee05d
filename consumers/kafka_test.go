package consumers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/roomcast/roomcast/consumers"
)

// TestSASLMechanismsReachKafka connects with each supported mechanism to a
// broker that requires it, and checks that a wrong password is refused.
func TestSASLMechanismsReachKafka(t *testing.T) {
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			cluster, err := kfake.NewCluster(kfake.Ports(0), kfake.EnableSASL(),
				kfake.Superuser(mech, "roomcast", "s3cret-pw"), kfake.SeedTopics(3, "chat.events"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cluster.Close)
			cfg := consumers.KafkaConfig{Brokers: cluster.ListenAddrs(), SASLMechanism: mech, SASLUsername: "roomcast", SASLPassword: "s3cret-pw"}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			producer, err := sarama.NewSyncProducer(cfg.Brokers, cfg.ProducerConfig())
			if err != nil {
				t.Fatalf("connect with %s: %v", mech, err)
			}
			defer producer.Close()
			if _, _, err := producer.SendMessage(&sarama.ProducerMessage{Topic: "chat.events", Key: sarama.StringEncoder("room-1"), Value: sarama.StringEncoder("{}")}); err != nil {
				t.Fatalf("produce with %s: %v", mech, err)
			}
			probe := consumers.NewProbe(cfg, "chat.events")
			defer probe.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := probe.Check(ctx); err != nil {
				t.Fatalf("probe with %s: %v", mech, err)
			}

			wrong := cfg
			wrong.SASLPassword = "wrong"
			bad := consumers.NewProbe(wrong, "chat.events")
			defer bad.Close()
			err = bad.Check(ctx)
			if err == nil {
				t.Fatal("a wrong password was accepted")
			}
			if strings.Contains(err.Error(), "wrong") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

func TestKafkaConfigNamesEveryProblem(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  consumers.KafkaConfig
		want []string
	}{
		{"nothing", consumers.KafkaConfig{}, []string{"KAFKA_BROKERS: required"}},
		{"bad broker", consumers.KafkaConfig{Brokers: []string{"kafka"}}, []string{`KAFKA_BROKERS: "kafka" is not host:port`}},
		{"unknown mechanism", consumers.KafkaConfig{Brokers: []string{"k:9092"}, SASLMechanism: "GSSAPI"}, []string{"KAFKA_SASL_MECHANISM"}},
		{"mechanism without credentials", consumers.KafkaConfig{Brokers: []string{"k:9092"}, SASLMechanism: "PLAIN"}, []string{"KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"}},
		{"credentials without mechanism", consumers.KafkaConfig{Brokers: []string{"k:9092"}, SASLUsername: "u", SASLPassword: "topsecret"}, []string{"KAFKA_SASL_MECHANISM: required"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "topsecret") {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
}
