package consumers

import (
	"context"
	"fmt"
	"time"

	"github.com/IBM/sarama"
)

// CatchUpConfig evens out how the partitions of a subscription drain a
// backlog.
//
// Sarama asks the broker for the same number of bytes of every partition in
// each fetch, so under a backlog the partitions are read at the same pace and
// the ones with the most messages left finish last, alone. The end of a
// catch-up then runs on the keys (rooms) of one or two partitions, and with
// one Pusher call in flight per room (~300 events/s per room at a 30 ms round
// trip) their deliveries trail the projection, and the catch-up is over only
// once those few rooms are delivered.
//
// While the largest backlog of the subscription's partitions (high-water mark
// minus the next offset to read) is big, the subscriber stops fetching
// (Sarama's ConsumerGroup.Pause) a partition whose backlog is below Ratio
// times the largest, until the partitions further behind have come down to
// it: the partitions then finish close together, with their rooms' deliveries
// spread over the whole catch-up. What was fetched is still handed out; only
// the next fetches skip the paused partition, so the other partitions'
// fetches never wait for it.
type CatchUpConfig struct {
	// Ratio is the share of the largest backlog below which a partition is
	// paused, in (0, 1). Default 0.5; negative turns balancing off.
	Ratio float64
	// MinBacklog: a partition with fewer messages left to read is never
	// paused, so partitions near their head (realtime traffic) are fetched
	// as usual while another one catches up. Default 1000.
	MinBacklog int64
	// MaxPause bounds how long a partition stays paused at a time. A paused
	// partition's backlog is not refreshed (its high-water mark comes with
	// its fetches), and the largest may not shrink (a partition produced to
	// faster than it is read): after MaxPause the partition is fetched again
	// for at least a quarter of MaxPause. Default 1s.
	MaxPause time.Duration
	// Interval is how often the backlogs are compared. Default 20ms.
	Interval time.Duration
}

func (c *CatchUpConfig) setDefaults() {
	if c.Ratio == 0 {
		c.Ratio = 0.5
	}
	if c.MinBacklog == 0 {
		c.MinBacklog = 1000
	}
	if c.MaxPause == 0 {
		c.MaxPause = time.Second
	}
	if c.Interval == 0 {
		c.Interval = 20 * time.Millisecond
	}
}

func (c CatchUpConfig) validate() error {
	switch {
	case c.Ratio >= 1:
		return fmt.Errorf("keyed subscriber: CatchUp.Ratio %v must be below 1 (negative: off)", c.Ratio)
	case c.MinBacklog < 0:
		return fmt.Errorf("keyed subscriber: CatchUp.MinBacklog %d is negative", c.MinBacklog)
	case c.MaxPause < 0:
		return fmt.Errorf("keyed subscriber: CatchUp.MaxPause %v is negative", c.MaxPause)
	case c.Interval < 0:
		return fmt.Errorf("keyed subscriber: CatchUp.Interval %v is negative", c.Interval)
	}
	return nil
}

// catchUpState is the balancer's record of one partition (its goroutine
// only, but paused, which Stats reads under the partition's lock).
type catchUpState struct {
	paused      bool
	pausedSince time.Time
	resumedAt   time.Time // when MaxPause last ended a pause
}

// pause tells whether a partition with backlog messages left to read, when
// the largest backlog of its subscription is most, should be paused at now.
func (c CatchUpConfig) pause(backlog, most int64, st catchUpState, now time.Time) bool {
	if c.Ratio <= 0 || backlog < c.MinBacklog || float64(backlog) >= c.Ratio*float64(most) {
		return false
	}
	if st.paused {
		return now.Sub(st.pausedSince) < c.MaxPause
	}
	return st.resumedAt.IsZero() || now.Sub(st.resumedAt) >= c.MaxPause/4
}

// balanceCatchUp pauses and resumes the partitions h holds until ctx ends.
func (s *KeyedSubscriber) balanceCatchUp(ctx context.Context, group sarama.ConsumerGroup, h *keyedGroupHandler) {
	cfg := s.cfg.CatchUp
	if cfg.Ratio <= 0 {
		return
	}
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	var parts []*keyedPartition
	var backlog []int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		parts, backlog = parts[:0], backlog[:0]
		s.mu.Lock()
		for _, p := range s.partition {
			if p.h == h {
				parts = append(parts, p)
			}
		}
		s.mu.Unlock()
		var most int64
		for _, p := range parts {
			n := p.backlog()
			backlog = append(backlog, n)
			most = max(most, n)
		}
		now := time.Now()
		for i, p := range parts {
			st := p.catchUp
			pause := cfg.pause(backlog[i], most, st, now)
			if pause == st.paused {
				continue
			}
			if !pause && now.Sub(st.pausedSince) >= cfg.MaxPause {
				st.resumedAt = now
			}
			st.paused = pause
			if pause {
				st.pausedSince = now
			}
			s.setPaused(group, p, st)
		}
	}
}

// setPaused pauses or resumes p's fetches. Only while p is registered: its
// claim, and so Sarama's consumer of the partition, is then still the one p
// reads (a new session's consumer of the partition starts after p's claim
// ended), so a late call never pauses the next session's.
func (s *KeyedSubscriber) setPaused(group sarama.ConsumerGroup, p *keyedPartition, st catchUpState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.partition[keyedTopicPartition{p.topic, p.id}] != p {
		return
	}
	tp := map[string][]int32{p.topic: {p.id}}
	if st.paused {
		group.Pause(tp)
	} else {
		group.Resume(tp)
	}
	p.mu.Lock()
	p.catchUp = st
	p.mu.Unlock()
}

// backlog is how many messages of the partition are left to read, as far as
// its last fetch tells (0 while unknown).
func (p *keyedPartition) backlog() int64 {
	next, hwm := p.next.Load(), p.claim.HighWaterMarkOffset()
	if next < 0 || hwm <= next {
		return 0
	}
	return hwm - next
}
