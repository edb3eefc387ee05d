package consumers

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"
)

// KafkaConfig is how roomcast reaches Kafka: brokers and, for managed Kafka,
// SASL and TLS.
type KafkaConfig struct {
	Brokers       []string
	SASLMechanism string // "", "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512"
	SASLUsername  string
	SASLPassword  string
	TLS           bool
	ClientID      string // default "roomcast"
}

// Validate reports every problem of the configuration at once, naming the
// environment variable that sets it.
func (c KafkaConfig) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("KAFKA_BROKERS: required (comma-separated host:port list)"))
	}
	for _, b := range c.Brokers {
		if b == "" || !strings.Contains(b, ":") {
			errs = append(errs, fmt.Errorf("KAFKA_BROKERS: %q is not host:port", b))
		}
	}
	switch c.SASLMechanism {
	case "":
		if c.SASLUsername != "" || c.SASLPassword != "" {
			errs = append(errs, errors.New("KAFKA_SASL_MECHANISM: required when KAFKA_SASL_USERNAME or KAFKA_SASL_PASSWORD is set (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"))
		}
	case sarama.SASLTypePlaintext, sarama.SASLTypeSCRAMSHA256, sarama.SASLTypeSCRAMSHA512:
		if c.SASLUsername == "" {
			errs = append(errs, errors.New("KAFKA_SASL_USERNAME: required when KAFKA_SASL_MECHANISM is set"))
		}
		if c.SASLPassword == "" {
			errs = append(errs, errors.New("KAFKA_SASL_PASSWORD: required when KAFKA_SASL_MECHANISM is set"))
		}
	default:
		errs = append(errs, fmt.Errorf("KAFKA_SASL_MECHANISM: %q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", c.SASLMechanism))
	}
	return errors.Join(errs...)
}

// apply sets the client id, SASL and TLS of c on a Sarama configuration.
func (c KafkaConfig) apply(sc *sarama.Config) {
	sc.ClientID = c.ClientID
	if sc.ClientID == "" {
		sc.ClientID = "roomcast"
	}
	if c.TLS {
		sc.Net.TLS.Enable = true
		sc.Net.TLS.Config = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if c.SASLMechanism == "" {
		return
	}
	sc.Net.SASL.Enable = true
	sc.Net.SASL.Handshake = true
	sc.Net.SASL.User = c.SASLUsername
	sc.Net.SASL.Password = c.SASLPassword
	sc.Net.SASL.Mechanism = sarama.SASLMechanism(c.SASLMechanism)
	switch c.SASLMechanism {
	case sarama.SASLTypeSCRAMSHA256:
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.HashGeneratorFcn(sha256.New)} }
	case sarama.SASLTypeSCRAMSHA512:
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.HashGeneratorFcn(sha512.New)} }
	}
}

// ProducerConfig returns a Sarama configuration for a synchronous producer
// that partitions by key with murmur2, as the Java client and KafkaJS do.
func (c KafkaConfig) ProducerConfig() *sarama.Config {
	sc := sarama.NewConfig()
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Retry.Max = 10
	sc.Producer.Partitioner = sarama.NewMurmur2Partitioner
	sc.Metadata.Retry.Max = 10
	c.apply(sc)
	return sc
}

// scramClient adapts xdg-go/scram to Sarama's SCRAMClient.
type scramClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

func (s *scramClient) Begin(user, password, authzID string) error {
	client, err := s.hash.NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	s.conv = client.NewConversation()
	return nil
}

func (s *scramClient) Step(challenge string) (string, error) { return s.conv.Step(challenge) }
func (s *scramClient) Done() bool                            { return s.conv.Done() }
