package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/roomcast/roomcast/config"
	"github.com/roomcast/roomcast/internal/feed"
)

// runEmit is `roomcast emit`: CloudEvents JSON lines on stdin to Kafka, keyed
// by domain.PartitionKey and partitioned with murmur2 like the Java client.
func runEmit(ctx context.Context, args []string, env config.Getenv, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("emit", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	brokers := fs.String("brokers", "", "comma-separated bootstrap servers (default $KAFKA_BROKERS)")
	topic := fs.String("topic", "", "topic (default $KAFKA_TOPIC or chat.events)")
	allowInvalid := fs.Bool("allow-invalid", false, "also send lines that break the event contract (to exercise the dead-letter path)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: emit: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: emit reads stdin and takes no arguments, got %q", errUsage, fs.Args())
	}
	cfg, err := config.Load(func(name string) string {
		switch {
		case name == "KAFKA_BROKERS" && *brokers != "":
			return *brokers
		case name == "KAFKA_TOPIC" && *topic != "":
			return *topic
		}
		return env(name)
	}, config.Kafka)
	if err != nil {
		return err
	}
	producer, err := feed.NewProducer(cfg.Kafka, cfg.Topic)
	if err != nil {
		return err
	}
	defer func() { _ = producer.Close() }()

	rejected := 0
	var rejects []error
	scanner := bufio.NewScanner(stdin)
	scanner.Buffer(make([]byte, 1<<20), 16<<20)
	line := 0
	for scanner.Scan() {
		line++
		if ctx.Err() != nil {
			break
		}
		raw := bytes.TrimSpace(scanner.Bytes())
		if len(raw) == 0 {
			continue
		}
		key, err := feed.Key(raw, cfg.EventMaxBytes, *allowInvalid)
		if err != nil {
			rejected++
			rejects = append(rejects, fmt.Errorf("line %d: %w", line, err))
			continue
		}
		if err := producer.Add(key, raw); err != nil {
			return err
		}
	}
	if err := scanner.Err(); err != nil {
		return fmt.Errorf("read stdin after line %d: %w", line, err)
	}
	if err := producer.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "sent %d events to %s", producer.Sent(), cfg.Topic)
	if rejected > 0 {
		fmt.Fprintf(stdout, ", rejected %d lines", rejected)
	}
	fmt.Fprintln(stdout)
	if len(rejects) > 0 {
		return fmt.Errorf("%d lines rejected:\n%w", rejected, errors.Join(rejects...))
	}
	return ctx.Err()
}
