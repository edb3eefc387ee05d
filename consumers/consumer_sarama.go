package consumers

import (
	"time"

	"github.com/IBM/sarama"
)

// ConsumerConfig returns the Sarama configuration a KeyedSubscriber starts
// from: c's client id, SASL and TLS, with buffers bounded in bytes and
// timeouts that fit together.
//
// Memory. Sarama buffers, per partition, up to ChannelBufferSize messages
// in a channel, plus the rest of the partition's last fetch response that
// its feeder goroutine is still handing over, before the subscriber takes
// them (and the subscriber reads one more, waiting for room). Its defaults
// (256 messages, 1 MiB per partition and fetch) hold ~256 MB per partition
// of 1 MB messages: a backlog of large messages crashed the worker with an
// out-of-memory error however the subscriber bounded itself. Here, with M
// the largest message (the broker's max.message.bytes, 1 MiB by default),
// Sarama holds at most (ChannelBufferSize + 2) * M + Fetch.Default per
// partition: ~7 MiB for 1 MiB messages, ~1 MiB for small ones; plus the
// subscriber's own MaxInFlightBytes. Sarama decodes messages in place, so a
// message still held keeps its whole fetch response alive:
// Consumer.Fetch.MaxBytes bounds a response (the broker returns one record
// batch beyond it when that batch alone is larger, KIP-74).
//
// Throughput. Under a backlog of small messages the partition's fetch
// response (Fetch.Default, 1 MiB: ~2,000 events) is what keeps the
// subscriber fed, not the channel, which stays full either way; a smaller
// ChannelBufferSize only absorbs less jitter. It is the knob to look at if
// small-message throughput drops.
//
// Consumer.Fetch.Max stays 0 (no limit): Sarama grows a partition's fetch
// size to the size of a record batch larger than Fetch.Default, and at
// Fetch.Max it would give the message up with ErrMessageTooLarge and skip
// it. With KIP-74 (fetch v3+, every broker since 0.10.1) such a batch comes
// whole, so a message larger than the fetch size never stalls a partition.
//
// Timeouts. Sarama reads every response, a JoinGroup's too, within
// Net.ReadTimeout (30s), while the broker may hold a JoinGroup for up to
// the group's Consumer.Group.Rebalance.Timeout (Sarama's default 60s) while
// it waits for the other members: the member gave up, joined again and
// could loop like that for good (with killed members the group waits for).
// Rebalance.Timeout is therefore 20s: below Net.ReadTimeout with room for
// the answer, and above DrainTimeout (10s), the time a revoked partition's
// messages get to finish before the member rejoins. A broker holds a join
// for the largest Rebalance.Timeout among the members, so older members
// with Sarama's default can still cause one such retry.
func (c KafkaConfig) ConsumerConfig() *sarama.Config {
	sc := sarama.NewConfig()
	c.apply(sc)
	sc.ChannelBufferSize = 4
	sc.Consumer.Fetch.Default = 1 << 20
	sc.Consumer.Fetch.MaxBytes = 8 << 20
	sc.Consumer.Fetch.Max = 0
	sc.Net.ReadTimeout = 30 * time.Second
	sc.Consumer.Group.Rebalance.Timeout = 20 * time.Second
	return sc
}
