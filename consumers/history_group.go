package consumers

import (
	"errors"
	"fmt"

	"github.com/IBM/sarama"
)

// ErrGroupUnknown: HistoryConfig.StopAtGroup is not a consumer group Kafka knows.
var ErrGroupUnknown = errors.New("not known to Kafka")

// ErrGroupNotOnTopic: HistoryConfig.StopAtGroup has no committed offset on
// the topic and no member consuming it.
var ErrGroupNotOnTopic = errors.New("not consuming the topic")

// stopAtGroup ends every span at the committed offset of cfg.StopAtGroup.
func (h *History) stopAtGroup(partitions []int32) error {
	group, topic := h.cfg.StopAtGroup, h.cfg.Topic
	admin, err := sarama.NewClusterAdmin(h.cfg.Kafka.Brokers, h.cfg.Kafka.ClientConfig())
	if err != nil {
		return fmt.Errorf("connect to kafka %v: %w", h.cfg.Kafka.Brokers, err)
	}
	defer func() { _ = admin.Close() }()
	committed := map[int32]int64{}
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: partitions})
	switch {
	case errors.Is(err, sarama.ErrGroupIDNotFound): // no commits (some brokers answer so)
	case err != nil:
		return fmt.Errorf("committed offsets of consumer group %q: %w", group, err)
	default:
		for _, p := range partitions {
			if b := resp.GetBlock(topic, p); b != nil && errors.Is(b.Err, sarama.ErrNoError) && b.Offset >= 0 {
				committed[p] = b.Offset
			}
		}
	}
	if len(committed) == 0 {
		// Kafka answers -1 for the offsets of a group it does not know:
		// ask what the group is.
		known, consuming, err := describeGroup(admin, group, topic)
		switch {
		case err != nil:
			return err
		case !known:
			return fmt.Errorf("consumer group %q: %w", group, ErrGroupUnknown)
		case !consuming:
			return fmt.Errorf("consumer group %q: no committed offset on %s and no member consuming it (%w)", group, topic, ErrGroupNotOnTopic)
		}
		// A member consumes the topic but has committed nothing yet: it
		// has consumed nothing, and every partition is left to it.
	}
	for i, s := range h.spans {
		if s.Start >= s.End {
			continue
		}
		off, ok := committed[s.Partition]
		switch {
		case !ok && h.cfg.GroupStartsAtLatest:
			continue // the group never reads these
		case !ok:
			off = s.Start // the group reads all of it
		case off >= s.End:
			continue // the group has consumed the whole span
		}
		h.spans[i].LeftToGroup = s.End - max(off, s.Start)
		h.spans[i].End = off
		h.spans[i].Start = min(s.Start, off)
	}
	return nil
}

// describeGroup says whether Kafka knows group and whether a member of it
// is assigned partitions of topic.
func describeGroup(admin sarama.ClusterAdmin, group, topic string) (known, consuming bool, err error) {
	descs, err := admin.DescribeConsumerGroups([]string{group})
	if err != nil {
		return false, false, fmt.Errorf("describe consumer group %q: %w", group, err)
	}
	for _, d := range descs {
		if d.GroupId != group || errors.Is(d.Err, sarama.ErrGroupIDNotFound) || d.State == "Dead" || d.State == "" {
			continue
		}
		if !errors.Is(d.Err, sarama.ErrNoError) {
			return false, false, fmt.Errorf("describe consumer group %q: %w", group, d.Err)
		}
		known = true
		for _, m := range d.Members {
			a, err := m.GetMemberAssignment()
			if err == nil && a != nil && len(a.Topics[topic]) > 0 {
				consuming = true
			}
		}
	}
	return known, consuming, nil
}
