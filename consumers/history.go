package consumers

import (
	"context"
	"errors"
	"fmt"
	"sync"
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

// RedrivenHeader is the Kafka header `roomcast dlq redrive` puts on the
// dead letters it sends back to the events topic, naming where it took them
// from (topic/partition/offset). The worker and `replay kafka` apply such an
// event as re-driven (projections.Origin.Redriven): an edit only if it is
// not older than its message's current state.
const RedrivenHeader = "redriven_from"

// DefaultHistoryIdle is HistoryConfig.IdleTimeout's default.
const DefaultHistoryIdle = 5 * time.Second

// HistoryConfig says which part of a topic ReadHistory reads.
type HistoryConfig struct {
	Kafka KafkaConfig
	Topic string
	// Since is the time to start from: each partition's first message with
	// a timestamp at or after it. Zero means each partition's oldest message.
	Since time.Time
	// BatchMax is the most messages handed over at once (default 1000).
	BatchMax int
	// IdleTimeout is how long a partition may deliver nothing, below its
	// span's end, before the read looks at what is left there (default
	// DefaultHistoryIdle). A direct fetch at the next offset tells whether a
	// record remains to be delivered below the end: when none does (the
	// last offsets are transaction markers, or were compacted away) the
	// partition is done; otherwise (a broker that pauses, a slow network)
	// it goes on waiting, as long as it takes, reporting each IdleTimeout
	// to Waiting. A pause never ends a partition.
	IdleTimeout time.Duration
	// Waiting, if set, is told every IdleTimeout that a partition waits for
	// its next record (it may be called from several goroutines at once).
	Waiting func(HistoryWait)
	// StopAtGroup, if set, ends each partition at this consumer group's
	// committed offset when the group has one below the high-water mark:
	// what the group has not consumed yet is left to it (and to the
	// notifications its worker sends). A partition it has no committed
	// offset on is left to it whole (it will read it from its oldest
	// message), unless GroupStartsAtLatest (it never will: it is read).
	// A group Kafka does not know (ErrGroupUnknown), or one with no
	// committed offset on the topic and no member consuming it
	// (ErrGroupNotOnTopic), is an error: most likely a wrong name, and
	// reading everything would take the group's notifications from it.
	StopAtGroup string
	// GroupStartsAtLatest says that StopAtGroup starts a partition it has
	// no committed offset on at its newest offset (the worker's
	// KAFKA_INITIAL_OFFSET=latest) rather than its oldest.
	GroupStartsAtLatest bool
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

// HistoryWait says that a partition has delivered nothing for a while
// although records are left below its span's end.
type HistoryWait struct {
	Partition int32
	Offset    int64 // the next offset to read
	End       int64 // the span's end
	For       time.Duration
	// Err is why the broker's answer did not tell what is left, if it did not.
	Err error
}

// History reads a topic's history with a plain (group-less) consumer: it
// joins no consumer group and commits no offsets, so it disturbs no live
// member and may run while `roomcast run` consumes.
type History struct {
	cfg    HistoryConfig
	client sarama.Client
	spans  []HistorySpan

	probeMu    sync.Mutex
	probe      sarama.Client // nextReadable's own connection, opened on first use
	probeBytes int32
}

// clientConfig is the configuration of the history's clients. The history
// is read at read_uncommitted, as the worker reads the topic (and the
// high-water mark is the end of what it can read).
func (h *History) clientConfig() *sarama.Config {
	sc := h.cfg.Kafka.ClientConfig()
	sc.Consumer.Return.Errors = true
	sc.Consumer.IsolationLevel = sarama.ReadUncommitted
	return sc
}

// OpenHistory connects to Kafka and fixes the span of every partition of
// cfg.Topic: from cfg.Since (or the oldest offset) to the high-water mark
// seen now. Messages produced later are not read.
func OpenHistory(cfg HistoryConfig) (*History, error) {
	if cfg.BatchMax <= 0 {
		cfg.BatchMax = 1000
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultHistoryIdle
	}
	h := &History{cfg: cfg}
	sc := h.clientConfig()
	h.probeBytes = sc.Consumer.Fetch.Default
	client, err := sarama.NewClient(cfg.Kafka.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("connect to kafka %v: %w", cfg.Kafka.Brokers, err)
	}
	h.client = client
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
func (h *History) Close() error {
	h.probeMu.Lock()
	if h.probe != nil {
		_ = h.probe.Close()
		h.probe = nil
	}
	h.probeMu.Unlock()
	return h.client.Close()
}

// Read hands the messages of every span to each, in batches of at most
// BatchMax, each partition's messages in offset order; each runs once at a
// time. It returns nil once every partition reached its span's end (see
// HistoryConfig.IdleTimeout: a partition that pauses is waited for), or
// the first error: each's, a partition consumer's that cannot go on, or
// ctx's when it ends first.
func (h *History) Read(ctx context.Context, each func([]*sarama.ConsumerMessage) error) (err error) {
	consumer, err := sarama.NewConsumerFromClient(h.client)
	if err != nil {
		return fmt.Errorf("consume %s: %w", h.cfg.Topic, err)
	}
	var (
		openMu sync.Mutex
		open   = map[sarama.PartitionConsumer]bool{}
	)
	defer func() {
		closeAll := func() {
			openMu.Lock()
			defer openMu.Unlock()
			for pc := range open {
				_ = pc.Close()
			}
			_ = consumer.Close()
		}
		if err != nil {
			// A paused broker may hold the consumer's fetch in flight until
			// its read timeout, and closing waits for it: do not make an
			// interrupted read wait too.
			go closeAll()
			return
		}
		closeAll()
	}()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel() // the readers started, when a partition cannot be consumed
	g, gctx := errgroup.WithContext(rctx)
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
		openMu.Lock()
		open[pc] = true
		openMu.Unlock()
		readers.Go(func() error {
			if err := h.readSpan(gctx, pc, s, msgs); err != nil {
				return err
			}
			openMu.Lock()
			delete(open, pc)
			openMu.Unlock()
			_ = pc.Close() // done: the broker answers, and fetching it stops
			return nil
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
	if rerr := <-readDone; rerr != nil && err == nil {
		err = rerr
	}
	return err
}

// readSpan sends s's messages to msgs until the next offset to read
// reaches s.End. A partition that delivers nothing for IdleTimeout is
// looked at (nextReadable, in the background): it ends there only when
// nothing readable is left below the end; otherwise it waits until its
// next record comes or ctx ends, reporting it every IdleTimeout.
func (h *History) readSpan(ctx context.Context, pc sarama.PartitionConsumer, s HistorySpan, msgs chan<- *sarama.ConsumerMessage) error {
	next := s.Start
	idle := time.NewTimer(h.cfg.IdleTimeout)
	defer idle.Stop()
	var (
		quiet   time.Time          // when the partition last delivered, while it is quiet
		probing <-chan probeAnswer // the look in flight, if any
	)
	for next < s.End {
		select {
		case m, ok := <-pc.Messages():
			if !ok {
				return fmt.Errorf("consume %s/%d: the partition consumer stopped at offset %d, below %d", h.cfg.Topic, s.Partition, next, s.End)
			}
			if m.Offset >= s.End {
				return nil
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return ctx.Err()
			}
			next = m.Offset + 1
			quiet = time.Time{}
			idle.Reset(h.cfg.IdleTimeout)
		case cerr := <-pc.Errors():
			if err := fatalConsumeError(cerr); err != nil {
				return fmt.Errorf("consume %s/%d at offset %d: %w", h.cfg.Topic, s.Partition, next, err)
			}
			// Sarama retries the others (a lost connection, a leader
			// moving) by itself: the partition waits meanwhile.
			h.wait(s, next, quiet, cerr)
		case <-idle.C:
			if quiet.IsZero() {
				quiet = time.Now().Add(-h.cfg.IdleTimeout)
			}
			if probing == nil {
				probing = h.lookAhead(ctx, s.Partition, next, s.End)
			} else { // the broker does not answer the look either
				h.wait(s, next, quiet, nil)
			}
			idle.Reset(h.cfg.IdleTimeout)
		case a := <-probing:
			probing = nil
			if a.err == nil && a.at >= s.End {
				return nil // nothing readable is left below the end
			}
			if a.err == nil || errors.Is(a.err, errNothingAnswered) {
				// The offsets skipped hold nothing to deliver (this holds
				// even if records arrived meanwhile: they are past them).
				next = max(next, a.at)
			}
			if ctx.Err() == nil {
				h.wait(s, next, quiet, a.err)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

type probeAnswer struct {
	at  int64
	err error
}

// lookAhead runs nextReadable in the background.
func (h *History) lookAhead(ctx context.Context, partition int32, from, end int64) <-chan probeAnswer {
	out := make(chan probeAnswer, 1)
	go func() {
		at, err := h.nextReadable(ctx, partition, from, end)
		out <- probeAnswer{at, err}
	}()
	return out
}

func (h *History) wait(s HistorySpan, next int64, quiet time.Time, err error) {
	if h.cfg.Waiting == nil {
		return
	}
	w := HistoryWait{Partition: s.Partition, Offset: next, End: s.End, Err: err}
	if !quiet.IsZero() {
		w.For = time.Since(quiet)
	}
	h.cfg.Waiting(w)
}

// fatalConsumeError returns err if the partition consumer gave up after it
// (it closes itself), else nil.
func fatalConsumeError(err error) error {
	for _, fatal := range []error{sarama.ErrOffsetOutOfRange, sarama.ErrConsumerRetriesExhausted, sarama.ErrMessageTooLarge} {
		if errors.Is(err, fatal) {
			return err
		}
	}
	return nil
}
