package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
)

// topicState is what the subscriber knows about a topic as a whole: how
// many of its partitions this process holds, and the consumer group's lag
// over all of them, read from the brokers every GroupLagInterval. The
// "unassigned" stall comes from it: a process that holds no partition
// cannot see from its own partitions that the group is stuck (its members
// crash-looping through rebalances, or one holding every partition while
// it does not consume).
type topicState struct {
	// under KeyedSubscriber.mu
	subscribed      int
	assigned        int
	unassignedSince time.Time

	// under KeyedSubscriber.mu too; written by readGroupLag
	lagKnown   bool
	lag        int64     // the group's lag at the last reading
	position   int64     // sum of the group's positions at the last reading
	readAt     time.Time // of the last reading
	progressAt time.Time // last reading at which the position had moved (or the first)
}

func (s *KeyedSubscriber) topicLocked(topic string) *topicState {
	st := s.topics[topic]
	if st == nil {
		st = &topicState{unassignedSince: time.Now()}
		s.topics[topic] = st
	}
	return st
}

func (s *KeyedSubscriber) subscribedLocked(topic string) *topicState {
	st := s.topicLocked(topic)
	st.subscribed++
	return st
}

func (s *KeyedSubscriber) unsubscribedTopic(st *topicState) {
	s.mu.Lock()
	st.subscribed--
	s.mu.Unlock()
}

// groupLagReading is one reading of the group's offsets over a topic.
type groupLagReading struct {
	lag      int64 // high-water marks minus the group's positions
	position int64 // sum of the positions the group resumes from
}

// readGroupLag reads the group's lag over topic at once and then every
// GroupLagInterval until ctx ends, on a client of its own (whose requests
// have short timeouts, so that a reading never lasts long) dialing through
// the subscription's connections (so that a stop cuts it too).
func (s *KeyedSubscriber) readGroupLag(ctx context.Context, base *sarama.Config, topic string, st *topicState, log *slog.Logger) {
	interval := s.cfg.GroupLagInterval
	if interval < 0 {
		return
	}
	sc := *base
	sc.Net.DialTimeout = min(sc.Net.DialTimeout, 5*time.Second)
	sc.Net.ReadTimeout = min(sc.Net.ReadTimeout, 10*time.Second)
	sc.Net.WriteTimeout = min(sc.Net.WriteTimeout, 10*time.Second)
	sc.Metadata.Retry.Max = 1
	sc.Admin.Retry.Max = 1
	var admin sarama.ClusterAdmin
	var client sarama.Client
	defer func() {
		if admin != nil {
			_ = admin.Close() // closes client
		}
	}()
	failing := false
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if admin == nil {
			var err error
			if client, err = sarama.NewClient(s.cfg.Brokers, &sc); err == nil {
				if admin, err = sarama.NewClusterAdminFromClient(client); err != nil {
					_ = client.Close()
				}
			}
			if err != nil {
				admin, client = nil, nil
				if !failing && ctx.Err() == nil {
					log.Warn("read the consumer group's lag: connect", slog.Any("err", err))
				}
				failing = true
			}
		}
		if admin != nil {
			r, err := s.readGroupLagOnce(client, admin, topic)
			switch {
			case err != nil:
				if !failing && ctx.Err() == nil {
					log.Warn("read the consumer group's lag", slog.Any("err", err))
				}
				failing = true
			default:
				failing = false
				s.recordGroupLag(st, r, time.Now())
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *KeyedSubscriber) recordGroupLag(st *topicState, r groupLagReading, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !st.lagKnown || r.position != st.position {
		st.progressAt = now
	}
	st.lagKnown, st.lag, st.position, st.readAt = true, r.lag, r.position, now
}

// readGroupLagOnce reads the group's committed offsets and the high-water
// marks of topic. A partition without a committed offset counts from where
// the group would start reading it (InitialOffset).
func (s *KeyedSubscriber) readGroupLagOnce(client sarama.Client, admin sarama.ClusterAdmin, topic string) (groupLagReading, error) {
	var r groupLagReading
	if err := client.RefreshMetadata(topic); err != nil {
		return r, fmt.Errorf("topic %s: %w", topic, err)
	}
	parts, err := client.Partitions(topic)
	if err != nil {
		return r, fmt.Errorf("topic %s: %w", topic, err)
	}
	committed, err := admin.ListConsumerGroupOffsets(s.cfg.ConsumerGroup, map[string][]int32{topic: parts})
	if errors.Is(err, sarama.ErrGroupIDNotFound) {
		committed, err = &sarama.OffsetFetchResponse{}, nil
	}
	if err != nil {
		return r, fmt.Errorf("committed offsets: %w", err)
	}
	// A group that never committed may be unknown to the broker: no offsets.
	if committed.Err != sarama.ErrNoError && committed.Err != sarama.ErrGroupIDNotFound {
		return r, fmt.Errorf("committed offsets: %w", committed.Err)
	}
	for _, p := range parts {
		hwm, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return r, fmt.Errorf("high-water mark of %s/%d: %w", topic, p, err)
		}
		pos := int64(-1)
		if b := committed.GetBlock(topic, p); b != nil && b.Err == sarama.ErrNoError {
			pos = b.Offset
		}
		if pos < 0 {
			pos = hwm
			if s.cfg.InitialOffset == sarama.OffsetOldest {
				if pos, err = client.GetOffset(topic, p, sarama.OffsetOldest); err != nil {
					return r, fmt.Errorf("first offset of %s/%d: %w", topic, p, err)
				}
			}
		}
		r.position += pos
		r.lag += max(0, hwm-pos)
	}
	return r, nil
}

// topicStats is what the metrics show of a topic.
type topicStats struct {
	topic    string
	assigned int
	lag      int64
	lagKnown bool
}

func (s *KeyedSubscriber) topicStats() []topicStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	stats := make([]topicStats, 0, len(s.topics))
	for topic, st := range s.topics {
		stats = append(stats, topicStats{topic: topic, assigned: st.assigned, lag: st.lag, lagKnown: st.lagKnown})
	}
	return stats
}
