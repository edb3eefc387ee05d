package replay

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"

	"github.com/roomcast/roomcast/consumers"
	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/projections"
)

// deadLetteredBy is the handler a replay's dead letters name.
const deadLetteredBy = "replay"

// kafkaReplay projects batches of history read from Kafka.
type kafkaReplay struct {
	cfg      KafkaConfig
	log      *slog.Logger
	replayer *projections.Replayer
	dlq      *consumers.TopicProducer // nil: do not dead-letter
	wake     func()
	counts   projections.Counts
}

func (rk *kafkaReplay) batch(ctx context.Context, msgs []*sarama.ConsumerMessage) error {
	items := make([]projections.Item, 0, len(msgs))
	origin := make([]*sarama.ConsumerMessage, 0, len(msgs))
	var dead []*sarama.ProducerMessage
	deadLetter := func(m *sarama.ConsumerMessage, id, typ, reason string) {
		rk.log.Warn("event in history dead-lettered", slog.String("event_id", id), slog.String("type", typ),
			slog.String("reason", reason), slog.Int("partition", int(m.Partition)), slog.Int64("offset", m.Offset))
		rk.counts.Problems = appendProblem(rk.counts.Problems, projections.Problem{EventID: id, Type: typ, Reason: reason})
		if rk.dlq != nil {
			dead = append(dead, consumers.DeadLetterMessage(rk.cfg.DLQTopic, rk.cfg.Topic, deadLetteredBy, m, reason))
		}
	}
	for _, m := range msgs {
		env, err := domain.Decoder{MaxValueBytes: rk.cfg.EventMaxBytes}.Decode(m.Value) // the worker's limit
		if err != nil {
			id, typ := consumers.SniffIDType(m.Value)
			c := rk.counts.Of(typ)
			c.Read++
			c.Invalid++
			deadLetter(m, id, typ, err.Error())
			continue
		}
		items = append(items, projections.Item{Env: env, Origin: projections.Origin{Partition: m.Partition, Offset: m.Offset, Timestamp: m.Timestamp,
			Redriven: hasHeader(m, consumers.RedrivenHeader)}})
		origin = append(origin, m)
	}
	if len(items) > 0 {
		results, err := rk.project(ctx, items)
		if err != nil {
			return err
		}
		for i, r := range results {
			env := items[i].Env
			c := rk.counts.Of(string(env.Type))
			c.Read++
			switch {
			case r.Err != nil:
				c.Rejected++
				deadLetter(origin[i], env.ID, string(env.Type), r.Err.Error())
			case r.Outcome == projections.Applied:
				c.Applied++
			case r.Outcome == projections.Unchanged:
				c.Unchanged++
			default: // Duplicate, Conflict: already stored
				c.Duplicates++
			}
		}
	}
	if len(dead) > 0 {
		if err := rk.dlq.SendMessages(dead); err != nil {
			return fmt.Errorf("dead-letter %d events to %s: %w", len(dead), rk.cfg.DLQTopic, err)
		}
	}
	if rk.wake != nil {
		rk.wake()
	}
	return nil
}

// project retries a transient failure a few times (a replay can be run
// again, so giving up is safe).
func (rk *kafkaReplay) project(ctx context.Context, items []projections.Item) ([]projections.Result, error) {
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		results, err := rk.replayer.Project(ctx, items)
		if err == nil || attempt == 6 || ctx.Err() != nil {
			return results, err
		}
		rk.log.Warn("replay batch failed; retrying", slog.Int("attempt", attempt), slog.Any("error", err))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

func hasHeader(m *sarama.ConsumerMessage, key string) bool {
	for _, h := range m.Headers {
		if h != nil && string(h.Key) == key {
			return true
		}
	}
	return false
}

// appendProblem keeps the first problems only: each one is logged, and the
// summary says how many more there were.
func appendProblem(ps []projections.Problem, p projections.Problem) []projections.Problem {
	if len(ps) < 100 {
		ps = append(ps, p)
	}
	return ps
}
