package consumers

import "time"

// Stall is a condition that keeps events from progressing: /readyz reports
// it and roomcast_consumer_stalled{cause} counts it once it has lasted
// longer than STALL_AFTER.
type Stall struct {
	Cause  string    // "partition", "unassigned", "retry" or "dead_letter"
	Since  time.Time // when the condition began
	Detail string    // one short line without secrets
}
