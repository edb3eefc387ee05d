package consumers

import (
	"context"
	"errors"
	"fmt"

	"github.com/IBM/sarama"
)

// errNothingAnswered: the broker's fetch at an offset below the span's end
// returned no batch at all, which a live broker does only when it has
// nothing at or after that offset yet (or is not answering in earnest).
// Nothing is concluded from it: the partition keeps waiting.
var errNothingAnswered = errors.New("the broker returned no record at this offset")

// nextReadable tells where the next record a consumer would deliver lies,
// at or after from and below end, on one partition: it returns that offset
// (readable), or end when there is none (the offsets left are transaction
// markers or were compacted away), or an error when the broker's answer
// does not tell (then nothing is concluded).
//
// It fetches directly from the partition's leader on a connection of its
// own (a paused broker delays this fetch, never the consumer's), and walks
// the batches returned: a data record at or after from is readable; a batch
// of control records, or a batch whose records below its last offset were
// compacted away, only moves from past it, and it fetches again from there.
// Only offsets a batch covers are skipped, so a record that exists is never
// skipped: the worst case of an answer it cannot read is more waiting.
//
// The history is read at read_uncommitted (as the worker reads the topic),
// where every data record is delivered, aborted transactions' included.
func (h *History) nextReadable(ctx context.Context, partition int32, from, end int64) (int64, error) {
	client, err := h.probeClient()
	if err != nil {
		return from, err
	}
	for from < end {
		if err := ctx.Err(); err != nil {
			return from, err
		}
		broker, err := client.Leader(h.cfg.Topic, partition)
		if err != nil {
			return from, fmt.Errorf("leader of %s/%d: %w", h.cfg.Topic, partition, err)
		}
		req := &sarama.FetchRequest{Version: 4, MaxWaitTime: 0, MinBytes: 1, MaxBytes: h.probeBytes, Isolation: sarama.ReadUncommitted}
		req.AddBlock(h.cfg.Topic, partition, from, h.probeBytes, -1)
		resp, err := fetchWithin(ctx, broker, req)
		if err != nil {
			_ = broker.Close() // a fresh connection next time
			return from, fmt.Errorf("fetch %s/%d at offset %d: %w", h.cfg.Topic, partition, from, err)
		}
		block := resp.GetBlock(h.cfg.Topic, partition)
		switch {
		case block == nil:
			return from, fmt.Errorf("fetch %s/%d at offset %d: no answer for the partition", h.cfg.Topic, partition, from)
		case errors.Is(block.Err, sarama.ErrOffsetOutOfRange):
			// Retention removed the offsets from here: nothing to read there.
			oldest, err := client.GetOffset(h.cfg.Topic, partition, sarama.OffsetOldest)
			if err != nil {
				return from, fmt.Errorf("oldest offset of %s/%d: %w", h.cfg.Topic, partition, err)
			}
			if oldest <= from {
				return from, fmt.Errorf("fetch %s/%d at offset %d: %w", h.cfg.Topic, partition, from, block.Err)
			}
			from = oldest
			continue
		case !errors.Is(block.Err, sarama.ErrNoError):
			return from, fmt.Errorf("fetch %s/%d at offset %d: %w", h.cfg.Topic, partition, from, block.Err)
		}
		at, covered := readableIn(block, from, end)
		if at >= 0 {
			return at, nil
		}
		if covered <= from {
			return from, errNothingAnswered
		}
		from = covered
	}
	return end, nil
}

// readableIn returns the first data record's offset in block at or after
// from and below end (-1 if none), and the offset after the last complete
// batch block holds.
func readableIn(block *sarama.FetchResponseBlock, from, end int64) (at, covered int64) {
	covered = from
	for _, rs := range block.RecordsSet {
		switch {
		case rs.RecordBatch != nil:
			rb := rs.RecordBatch
			if !rb.Control {
				for _, r := range rb.Records {
					if off := rb.FirstOffset + r.OffsetDelta; off >= from && off < end {
						return off, covered
					}
				}
			}
			if rb.PartialTrailingRecord {
				return -1, covered // cut short: what follows is not known
			}
			covered = max(covered, rb.FirstOffset+int64(rb.LastOffsetDelta)+1)
		case rs.MsgSet != nil:
			// The old message format: taken as readable as soon as a
			// message reaches from (a compressed wrapper carries the last
			// offset of its set), so that it is never skipped.
			for _, m := range rs.MsgSet.Messages {
				if m.Offset >= from && m.Offset < end {
					return max(from, m.Offset), covered
				}
			}
			return -1, covered
		}
	}
	return -1, covered
}

// fetchWithin is broker.Fetch, given up when ctx ends (the fetch itself
// then ends with the connection's read timeout or when the history closes).
func fetchWithin(ctx context.Context, broker *sarama.Broker, req *sarama.FetchRequest) (*sarama.FetchResponse, error) {
	type answer struct {
		resp *sarama.FetchResponse
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		resp, err := broker.Fetch(req)
		done <- answer{resp, err}
	}()
	select {
	case a := <-done:
		return a.resp, a.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// probeClient is the client nextReadable fetches with, connected on first use.
func (h *History) probeClient() (sarama.Client, error) {
	h.probeMu.Lock()
	defer h.probeMu.Unlock()
	if h.probe != nil {
		return h.probe, nil
	}
	client, err := sarama.NewClient(h.cfg.Kafka.Brokers, h.clientConfig())
	if err != nil {
		return nil, fmt.Errorf("connect to kafka %v: %w", h.cfg.Kafka.Brokers, err)
	}
	h.probe = client
	return client, nil
}
