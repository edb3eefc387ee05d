package consumers

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Stalls returns the conditions that keep this subscriber's messages from
// progressing now, each with the time it began, however recent (the caller
// reports those older than its threshold, STALL_AFTER):
//
//   - "partition": a partition this process holds has lag (its high-water
//     mark is above its marked offset) and its marked offset has not moved
//     since Since: its head message does not complete (a retry loop, a dead
//     letter that cannot be published) or nothing is read;
//   - "unassigned": this process holds no partition of a topic it
//     subscribes to while the group has lag over it and its committed
//     positions have not moved since Since (read every GroupLagInterval;
//     reported from the first reading that saw them where they were):
//     the group is stuck in rebalances, or the members holding the
//     partitions do not consume. An idle extra replica (more replicas than
//     partitions) while the others make progress is not a stall.
func (s *KeyedSubscriber) Stalls(now time.Time) []Stall {
	var stalls []Stall
	for _, st := range s.Stats() {
		if st.Marked < 0 || st.HighWaterMark <= st.Marked {
			continue
		}
		stalls = append(stalls, Stall{
			Cause: "partition", Since: st.MarkedAt,
			Detail: fmt.Sprintf("partition %s/%d has not advanced with %d messages of lag",
				st.Topic, st.Partition, st.HighWaterMark-st.Marked),
		})
	}
	s.mu.Lock()
	for topic, st := range s.topics {
		// readAt after progressAt: the last reading saw no progress.
		if st.subscribed == 0 || st.assigned > 0 || !st.lagKnown || st.lag == 0 || !st.readAt.After(st.progressAt) {
			continue
		}
		since := st.progressAt
		if st.unassignedSince.After(since) {
			since = st.unassignedSince
		}
		stalls = append(stalls, Stall{
			Cause: "unassigned", Since: since,
			Detail: fmt.Sprintf("no partition of %s is assigned to this process, and its group has not advanced with %d messages of lag",
				topic, st.lag),
		})
	}
	s.mu.Unlock()
	slices.SortFunc(stalls, func(a, b Stall) int { return cmp.Or(a.Since.Compare(b.Since), cmp.Compare(a.Detail, b.Detail)) })
	return stalls
}
