package feed

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/roomcast/roomcast/domain"
)

// Key validates one line (values up to maxBytes, EVENT_MAX_BYTES, as the
// worker reads them) and returns its Kafka key. With allowInvalid a line that
// breaks the contract is still sent if it is a JSON object, keyed by its
// subject when it has one.
func Key(raw []byte, maxBytes int, allowInvalid bool) (string, error) {
	env, err := domain.Decoder{MaxValueBytes: maxBytes}.Decode(raw)
	if err == nil {
		return domain.PartitionKey(env.Event), nil
	}
	if !allowInvalid {
		return "", err
	}
	var head struct {
		Subject string `json:"subject"`
	}
	if json.Unmarshal(raw, &head) != nil && !strings.HasPrefix(string(raw), "{") {
		return "", fmt.Errorf("not a JSON object")
	}
	return head.Subject, nil
}
