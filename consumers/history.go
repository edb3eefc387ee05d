package consumers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"golang.org/x/sync/errgroup"
)

// ClientConfig returns a Sarama configuration with c's client id, SASL and TLS.
func (c KafkaConfig) ClientConfig() *sarama.Config {
	sc := sarama.NewConfig()
	c.apply(sc)
	return sc
}

// HistoryConfig says which part of a topic ReadHistory reads.
type HistoryConfig struct {
	Kafka KafkaConfig
	Topic string
	// Since is the time to start from: each partition's first message with
	// a timestamp at or after it. Zero means each partition's oldest message.
	Since time.Time
	// BatchMax is the most messages handed over at once (default 1000).
	BatchMax int
	// IdleTimeout ends a partition that delivers nothing for this long
	// although its high-water mark was not reached (the last offsets were
	// transaction markers or compacted away; default 5s).
	IdleTimeout time.Duration
	// StopAtGroup, if set, ends each partition at this consumer group's
	// committed offset when the group has one below the high-water mark:
	// what the group has not consumed yet is left to it (and to the
	// notifications its worker sends).
	StopAtGroup string
}

// HistorySpan is the part of one partition a history read covers: offsets
// Start (included) to End (the high-water mark seen at start, excluded).
type HistorySpan struct {
	Partition  int32
	Start, End int64
	// LeftToGroup is how many messages below the high-water mark were left
	// to HistoryConfig.StopAtGroup.
	LeftToGroup int64
}

// History reads a topic's history with a plain (group-less) consumer: it
// joins no consumer group and commits no offsets, so it disturbs no live
// member and may run while `roomcast run` consumes.
type History struct {
	cfg    HistoryConfig
	client sarama.Client
	spans  []HistorySpan
}

// OpenHistory connects to Kafka and fixes the span of every partition of
// cfg.Topic: from cfg.Since (or the oldest offset) to the high-water mark
// seen now. Messages produced later are not read.
func OpenHistory(cfg HistoryConfig) (*History, error) {
	if cfg.BatchMax <= 0 {
		cfg.BatchMax = 1000
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 5 * time.Second
	}
	sc := cfg.Kafka.ClientConfig()
	sc.Consumer.Return.Errors = true
	client, err := sarama.NewClient(cfg.Kafka.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("connect to kafka %v: %w", cfg.Kafka.Brokers, err)
	}
	h := &History{cfg: cfg, client: client}
	partitions, err := client.Partitions(cfg.Topic)
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("partitions of %s: %w", cfg.Topic, err)
	}
	for _, p := range partitions {
		end, err := client.GetOffset(cfg.Topic, p, sarama.OffsetNewest)
		if err != nil {
			_ = client.Close()
			return nil, fmt.Errorf("high-water mark of %s/%d: %w", cfg.Topic, p, err)
		}
		at := sarama.OffsetOldest
		if !cfg.Since.IsZero() {
			at = cfg.Since.UnixMilli()
		}
		start, err := client.GetOffset(cfg.Topic, p, at)
		if err != nil {
			_ = client.Close()
			return nil, fmt.Errorf("offset of %s/%d at %v: %w", cfg.Topic, p, cfg.Since, err)
		}
		if start < 0 || start > end { // no message at or after Since
			start = end
		}
		h.spans = append(h.spans, HistorySpan{Partition: p, Start: start, End: end})
	}
	if cfg.StopAtGroup != "" {
		if err := h.stopAtGroup(partitions); err != nil {
			_ = client.Close()
			return nil, err
		}
	}
	return h, nil
}

// stopAtGroup ends every span at the committed offset of cfg.StopAtGroup.
func (h *History) stopAtGroup(partitions []int32) error {
	admin, err := sarama.NewClusterAdmin(h.cfg.Kafka.Brokers, h.cfg.Kafka.ClientConfig())
	if err != nil {
		return fmt.Errorf("connect to kafka %v: %w", h.cfg.Kafka.Brokers, err)
	}
	defer func() { _ = admin.Close() }()
	resp, err := admin.ListConsumerGroupOffsets(h.cfg.StopAtGroup, map[string][]int32{h.cfg.Topic: partitions})
	if errors.Is(err, sarama.ErrGroupIDNotFound) {
		return nil // no such group: nothing to leave to it
	}
	if err != nil {
		return fmt.Errorf("committed offsets of group %s: %w", h.cfg.StopAtGroup, err)
	}
	for i, s := range h.spans {
		b := resp.GetBlock(h.cfg.Topic, s.Partition)
		if b == nil || !errors.Is(b.Err, sarama.ErrNoError) || b.Offset < 0 || b.Offset >= s.End {
			continue // no commit: the group has not started (or is done) there
		}
		h.spans[i].LeftToGroup = s.End - max(b.Offset, s.Start)
		h.spans[i].End = b.Offset
		h.spans[i].Start = min(s.Start, b.Offset)
	}
	return nil
}

// LeftToGroup is how many messages the spans leave to HistoryConfig.StopAtGroup.
func (h *History) LeftToGroup() int64 {
	var n int64
	for _, s := range h.spans {
		n += s.LeftToGroup
	}
	return n
}

// Spans returns the part of each partition the read covers.
func (h *History) Spans() []HistorySpan { return h.spans }

// Messages is how many messages the spans hold (an upper bound on a
// compacted topic).
func (h *History) Messages() int64 {
	var n int64
	for _, s := range h.spans {
		n += s.End - s.Start
	}
	return n
}

// Close disconnects.
func (h *History) Close() error { return h.client.Close() }

// Read hands the messages of every span to each, in batches of at most
// BatchMax, each partition's messages in offset order; each runs once at a
// time. It returns when every partition reached its span's end, each
// returned an error, or ctx ended.
func (h *History) Read(ctx context.Context, each func([]*sarama.ConsumerMessage) error) error {
	consumer, err := sarama.NewConsumerFromClient(h.client)
	if err != nil {
		return fmt.Errorf("consume %s: %w", h.cfg.Topic, err)
	}
	defer func() { _ = consumer.Close() }()
	g, gctx := errgroup.WithContext(ctx)
	msgs := make(chan *sarama.ConsumerMessage, h.cfg.BatchMax)
	var readers errgroup.Group
	for _, s := range h.spans {
		if s.Start >= s.End {
			continue
		}
		pc, err := consumer.ConsumePartition(h.cfg.Topic, s.Partition, s.Start)
		if err != nil {
			return fmt.Errorf("consume %s/%d from offset %d: %w", h.cfg.Topic, s.Partition, s.Start, err)
		}
		readers.Go(func() error {
			defer func() { _ = pc.Close() }()
			idle := time.NewTimer(h.cfg.IdleTimeout)
			defer idle.Stop()
			for {
				select {
				case m := <-pc.Messages():
					if m.Offset >= s.End {
						return nil
					}
					select {
					case msgs <- m:
					case <-gctx.Done():
						return gctx.Err()
					}
					if m.Offset+1 >= s.End {
						return nil
					}
					idle.Reset(h.cfg.IdleTimeout)
				case err := <-pc.Errors():
					return fmt.Errorf("consume %s/%d: %w", h.cfg.Topic, s.Partition, err)
				case <-idle.C:
					if pc.HighWaterMarkOffset() >= s.End {
						return nil // nothing readable is left below the end
					}
					idle.Reset(h.cfg.IdleTimeout)
				case <-gctx.Done():
					return gctx.Err()
				}
			}
		})
	}
	readDone := make(chan error, 1)
	go func() { readDone <- readers.Wait(); close(msgs) }()
	g.Go(func() error {
		for {
			var batch []*sarama.ConsumerMessage
			select {
			case m, ok := <-msgs:
				if !ok {
					return nil
				}
				batch = append(batch, m)
			case <-gctx.Done():
				return gctx.Err()
			}
		fill:
			for len(batch) < h.cfg.BatchMax {
				select {
				case m, ok := <-msgs:
					if !ok {
						break fill
					}
					batch = append(batch, m)
				default:
					break fill
				}
			}
			if err := each(batch); err != nil {
				return err
			}
		}
	})
	err = g.Wait()
	if rerr := <-readDone; rerr != nil && !errors.Is(rerr, context.Canceled) && err == nil {
		err = rerr
	}
	return err
}
