package consumers

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/IBM/sarama"
)

// Failed publishes are sorted into the few causes of
// roomcast_dead_letter_failures_total.
func TestPublishFailureCause(t *testing.T) {
	cases := map[error]string{
		sarama.ErrMessageSizeTooLarge: "too_large",
		sarama.ConfigurationError("Attempt to produce message larger than configured Producer.MaxMessageBytes: 1048700 > 1048576"): "too_large",
		sarama.ErrUnknownTopicOrPartition:         "missing_topic",
		sarama.ErrTopicAuthorizationFailed:        "not_authorized",
		sarama.ErrSASLAuthenticationFailed:        "not_authorized",
		sarama.ErrOutOfBrokers:                    "unavailable",
		sarama.ErrNotEnoughReplicas:               "unavailable",
		fmt.Errorf("x: %w", syscall.ECONNREFUSED): "unavailable",
		errors.New("something else"):              "other",
	}
	for err, want := range cases {
		if got := publishFailureCause(err); got != want {
			t.Errorf("publishFailureCause(%v) = %q, want %q", err, got, want)
		}
	}
}
