package feed

import (
	"testing"
	"time"
)

// TestSampleKeepsTheContract: every line of the sample conversation is a
// valid event with a partition key, and each call has fresh ids.
func TestSampleKeepsTheContract(t *testing.T) {
	lines := Sample(2, 3, time.Now())
	if len(lines) != 18 {
		t.Errorf("2 rooms of 3 messages: %d events, want 18", len(lines))
	}
	for i, line := range lines {
		key, err := Key([]byte(line), 0, false)
		if err != nil || key == "" {
			t.Errorf("line %d: key %q, %v:\n%s", i+1, key, err, line)
		}
	}
	if again := Sample(2, 3, time.Now()); again[0] == lines[0] {
		t.Errorf("two calls built the same first event: %s", lines[0])
	}
}

// TestKeyAllowInvalid: a line that breaks the contract is refused, unless
// allowInvalid, when a JSON object goes under its subject and anything else
// is still refused.
func TestKeyAllowInvalid(t *testing.T) {
	bad := []byte(`{"subject":"room-1","type":"nope"}`)
	if _, err := Key(bad, 0, false); err == nil {
		t.Errorf("an invalid event got a key")
	}
	if key, err := Key(bad, 0, true); err != nil || key != "room-1" {
		t.Errorf("with allowInvalid: %q, %v; want room-1", key, err)
	}
	if _, err := Key([]byte("not json"), 0, true); err == nil {
		t.Errorf("with allowInvalid, a line that is not a JSON object got a key")
	}
}
