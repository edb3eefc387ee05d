package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/roomcast/roomcast/config"

	"github.com/IBM/sarama"

	"github.com/roomcast/roomcast/consumers"
	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/projections"
)

const dlqUsage = `dlq list [-reason TEXT] [-id ID,...]
  or   dlq redrive (-id ID,... | -reason TEXT | -all) [-dry-run]`

// runDLQ is `roomcast dlq list|redrive`.
func runDLQ(ctx context.Context, args []string, env config.Getenv, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: dlq needs list or redrive: %s", errUsage, dlqUsage)
	}
	switch args[0] {
	case "list":
		return runDLQList(ctx, args[1:], env, stdout)
	case "redrive":
		return runDLQRedrive(ctx, args[1:], env, stdout, stderr)
	}
	return fmt.Errorf("%w: dlq %q: want list or redrive: %s", errUsage, args[0], dlqUsage)
}

// deadLetter is one message of the dead-letter topic.
type deadLetter struct {
	msg             *sarama.ConsumerMessage
	id, typ, reason string
	deadLetteredBy  string // the handler that dead-lettered it ("project", "replay")
}

func readDeadLetter(m *sarama.ConsumerMessage) deadLetter {
	d := deadLetter{msg: m}
	d.id, d.typ = sniffIDType(m.Value)
	for _, h := range m.Headers {
		switch string(h.Key) {
		case "reason_poisoned":
			d.reason = string(h.Value)
		case "handler_poisoned":
			d.deadLetteredBy = string(h.Value)
		}
	}
	return d
}

// sniffIDType reads the id and type of a value that may break the contract
// ("-" for what it lacks).
func sniffIDType(value []byte) (id, typ string) {
	var head struct {
		ID   any `json:"id"`
		Type any `json:"type"`
	}
	_ = json.Unmarshal(value, &head)
	str := func(v any) string {
		switch v := v.(type) {
		case nil:
			return "-"
		case string:
			if v == "" {
				return "-"
			}
			return strings.ToValidUTF8(v, "?")
		default:
			return fmt.Sprint(v)
		}
	}
	return str(head.ID), str(head.Type)
}

// dlqFilter chooses dead letters by id or reason substring.
type dlqFilter struct {
	ids    map[string]bool
	reason string
	all    bool
}

func (f dlqFilter) match(d deadLetter) bool {
	if f.all {
		return true
	}
	if len(f.ids) > 0 && !f.ids[d.id] {
		return false
	}
	if f.reason != "" && !strings.Contains(d.reason, f.reason) {
		return false
	}
	return len(f.ids) > 0 || f.reason != ""
}

func (f *dlqFilter) flags(fs *flag.FlagSet) {
	fs.Func("id", "CloudEvents id(s) to choose, comma-separated (repeatable)", func(v string) error {
		if f.ids == nil {
			f.ids = map[string]bool{}
		}
		for _, id := range strings.Split(v, ",") {
			if id = strings.TrimSpace(id); id != "" {
				f.ids[id] = true
			}
		}
		return nil
	})
	fs.StringVar(&f.reason, "reason", "", "choose dead letters whose reason contains this text")
}

// readDLQ reads the whole dead-letter topic, oldest first, up to its
// high-water mark at start, with a group-less consumer.
func readDLQ(ctx context.Context, cfg config.Config) ([]deadLetter, error) {
	hist, err := consumers.OpenHistory(consumers.HistoryConfig{Kafka: cfg.Kafka, Topic: cfg.DLQTopic, IdleTimeout: 2 * time.Second})
	if err != nil {
		return nil, err
	}
	defer func() { _ = hist.Close() }()
	var out []deadLetter
	err = hist.Read(ctx, func(msgs []*sarama.ConsumerMessage) error {
		for _, m := range msgs {
			out = append(out, readDeadLetter(m))
		}
		return nil
	})
	return out, err
}

func runDLQList(ctx context.Context, args []string, env config.Getenv, stdout io.Writer) error {
	fs := flag.NewFlagSet("dlq list", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var f dlqFilter
	f.flags(fs)
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return fmt.Errorf("%w: dlq list: %v %s: %s", errUsage, err, strings.Join(fs.Args(), " "), dlqUsage)
	}
	f.all = len(f.ids) == 0 && f.reason == ""
	cfg, err := config.Load(env, config.Kafka)
	if err != nil {
		return err
	}
	dls, err := readDLQ(ctx, cfg)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION/OFFSET\tTIME\tID\tTYPE\tREASON")
	shown := 0
	for _, d := range dls {
		if !f.match(d) {
			continue
		}
		shown++
		fmt.Fprintf(tw, "%d/%d\t%s\t%s\t%s\t%s\n", d.msg.Partition, d.msg.Offset, domain.FormatTime(d.msg.Timestamp), d.id, d.typ, d.reason)
	}
	_ = tw.Flush()
	fmt.Fprintf(stdout, "%d of %d dead letters in %s\n", shown, len(dls), cfg.DLQTopic)
	return nil
}

func runDLQRedrive(ctx context.Context, args []string, env config.Getenv, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dlq redrive", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var f dlqFilter
	f.flags(fs)
	fs.BoolVar(&f.all, "all", false, "choose every dead letter")
	dry := fs.Bool("dry-run", false, "show what would be sent; send nothing")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return fmt.Errorf("%w: dlq redrive: %v %s: %s", errUsage, err, strings.Join(fs.Args(), " "), dlqUsage)
	}
	if !f.all && len(f.ids) == 0 && f.reason == "" {
		return fmt.Errorf("%w: dlq redrive needs -id, -reason or -all: %s", errUsage, dlqUsage)
	}
	cfg, err := config.Load(env, config.Kafka, config.Database)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr).With(slog.String("command", "dlq redrive"))
	dls, err := readDLQ(ctx, cfg)
	if err != nil {
		return err
	}
	var chosen []deadLetter
	seen := map[string]bool{}
	dupes := 0
	for _, d := range dls {
		if !f.match(d) {
			continue
		}
		if d.id != "-" && seen[d.id] {
			dupes++ // dead-lettered more than once (a replay, a redrive that failed again)
			continue
		}
		seen[d.id] = true
		chosen = append(chosen, d)
	}
	db, err := openCheckedDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() { _ = projections.Close(db) }()
	ids := make([]string, 0, len(chosen))
	for _, d := range chosen {
		ids = append(ids, d.id)
	}
	stored, err := projections.StoredIDs(ctx, db, ids)
	if err != nil {
		return err
	}
	var send []*sarama.ProducerMessage
	applied := 0
	for _, d := range chosen {
		if stored[d.id] {
			applied++
			log.Info("dead letter already applied: not sent again", slog.String("event_id", d.id))
			continue
		}
		send = append(send, redriveMessage(cfg.Topic, d))
		fmt.Fprintf(stdout, "redrive %s (%s) from %d/%d: %s\n", d.id, d.typ, d.msg.Partition, d.msg.Offset, d.reason)
	}
	if len(send) > 0 && !*dry {
		pc, serr := topicProducerConfig(cfg.Kafka, cfg.Topic)
		if serr != nil {
			log.Warn("re-driven messages keep Sarama's size limit", slog.Int("max_message_bytes", pc.Producer.MaxMessageBytes), slog.Any("error", serr))
		}
		producer, err := sarama.NewSyncProducer(cfg.Kafka.Brokers, pc)
		if err != nil {
			return fmt.Errorf("connect to kafka %v: %w", cfg.Kafka.Brokers, err)
		}
		defer func() { _ = producer.Close() }()
		if err := producer.SendMessages(send); err != nil {
			return fmt.Errorf("redrive %d dead letters to %s: %w", len(send), cfg.Topic, firstProducerError(err))
		}
	}
	verb := "sent"
	if *dry {
		verb = "would send (dry run)"
	}
	fmt.Fprintf(stdout, "%s %d dead letters to %s; skipped %d already applied and %d repeated in %s\n",
		verb, len(send), cfg.Topic, applied, dupes, cfg.DLQTopic)
	return nil
}

// redriveMessage is a dead letter back for the events topic: its key and
// value as they were, without the dead-lettering headers.
func redriveMessage(topic string, d deadLetter) *sarama.ProducerMessage {
	var headers []sarama.RecordHeader
	for _, h := range d.msg.Headers {
		switch string(h.Key) {
		case "reason_poisoned", "topic_poisoned", "handler_poisoned", "subscriber_poisoned", "_watermill_message_uuid", consumers.RedrivenHeader:
		default:
			headers = append(headers, *h)
		}
	}
	// The header marks it as re-driven: an edit then applies only if it is
	// not older than its message's state (projections/redrive.go).
	headers = append(headers, sarama.RecordHeader{Key: []byte(consumers.RedrivenHeader),
		Value: fmt.Appendf(nil, "%s/%d/%d", d.msg.Topic, d.msg.Partition, d.msg.Offset)})
	pm := &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(d.msg.Value), Headers: headers}
	if d.msg.Key != nil {
		pm.Key = sarama.ByteEncoder(d.msg.Key)
	}
	return pm
}
