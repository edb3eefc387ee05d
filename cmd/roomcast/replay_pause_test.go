package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	kproto "github.com/twmb/franz-go/pkg/kmsg"

	"github.com/roomcast/roomcast/consumers"
	"github.com/roomcast/roomcast/internal/localstack"
	"github.com/roomcast/roomcast/internal/testsupport"
)

// pausingKafka is an in-process broker whose fetches can be held: the
// broker then answers no fetch (of any partition, on any connection) until
// the pause is released, as a broker stuck in a long GC pause or behind a
// network partition would.
type pausingKafka struct {
	cluster *kfake.Cluster
	env     testsupport.KafkaEnv

	fetches atomic.Int64
	pauseAt int64 // the fetch that starts the pause (0: never)
	began   chan struct{}
	release chan struct{}
	once    sync.Once
	relOnce sync.Once
}

// newPausingKafka starts the broker. Every fetch gets one record batch per
// partition at most (so a replay of a few hundred messages takes many
// fetches), and fetch number pauseAt, with every later one, waits for
// resume.
func newPausingKafka(t *testing.T, pauseAt int64) *pausingKafka {
	t.Helper()
	k, err := localstack.StartKafka(localstack.KafkaConfig{Topics: map[string]int32{"chat.events": 12, "chat.events.dlq": 1}})
	if err != nil {
		t.Fatalf("start in-process Kafka: %v", err)
	}
	pk := &pausingKafka{
		cluster: k.Cluster(), pauseAt: pauseAt, began: make(chan struct{}), release: make(chan struct{}),
		env: testsupport.KafkaEnv{Brokers: k.Brokers(), Topics: map[string]string{"chat.events": "chat.events", "chat.events.dlq": "chat.events.dlq"}},
	}
	// Released before the broker closes: a slept request would hold Close.
	t.Cleanup(k.Close)
	t.Cleanup(pk.resume)
	pk.cluster.ControlKey(int16(kproto.Fetch), func(req kproto.Request) (kproto.Response, error, bool) {
		pk.cluster.KeepControl()
		fr := req.(*kproto.FetchRequest)
		for i := range fr.Topics {
			for j := range fr.Topics[i].Partitions {
				fr.Topics[i].Partitions[j].PartitionMaxBytes = 1 // the broker still sends one whole batch
			}
		}
		if n := pk.fetches.Add(1); pk.pauseAt > 0 && n >= pk.pauseAt {
			select {
			case <-pk.release:
			default:
				pk.once.Do(func() { close(pk.began) })
				pk.cluster.SleepControl(func() { <-pk.release })
			}
		}
		return nil, nil, false // handled by the broker as usual
	})
	return pk
}

func (pk *pausingKafka) resume() { pk.relOnce.Do(func() { close(pk.release) }) }

// produceInSmallBatches sends msgs a few at a time, so that each partition
// holds many record batches.
func (s *stack) produceInSmallBatches(msgs []kmsg) {
	s.t.Helper()
	for i := 0; i < len(msgs); i += 4 {
		s.produce(msgs[i:min(i+4, len(msgs))]...)
	}
}

// The broker stops answering fetches mid-replay for longer than the
// replay's idle timeout, then resumes: the replay waits (and says so, with
// the partition and offset) and applies every event; the summary counts
// all of them.
func TestReplayKafkaWaitsOutAPausedBroker(t *testing.T) {
	t.Parallel()
	pk := newPausingKafka(t, 4)
	s := newStackOn(t, pk.env)
	s.migrateUp()
	events := history("kp", 6, 8)
	s.produceInSmallBatches(toMsgs(events))

	var stderr testsupport.SyncBuffer
	var stdout testsupport.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(t.Context(), []string{"replay", "kafka", "-from", "earliest", "-live-group", "-", "-batch", "16"},
			s.getenv(map[string]string{"LOG_FORMAT": "text"}), nil, &stdout, &stderr)
	}()
	select {
	case <-pk.began:
	case err := <-done:
		t.Fatalf("the replay returned (%v) before the broker paused:\n%s", err, stdout.String())
	case <-time.After(60 * time.Second):
		t.Fatal("the broker was never asked for the fetch that pauses it")
	}
	// Held until the replay has said twice that it waits (each idle
	// timeout), i.e. longer than the idle timeout that used to end it.
	testsupport.WaitFor(t, 20*consumers.DefaultHistoryIdle, "the replay to report twice that it waits", func() (bool, string) {
		select {
		case err := <-done:
			t.Fatalf("the replay returned during the pause (%v):\n%s\nstderr:\n%s", err, stdout.String(), tail(stderr.String(), 20))
		default:
		}
		n := strings.Count(stderr.String(), "replay waiting for Kafka")
		return n >= 2, fmt.Sprintf("%d waiting lines", n)
	})
	line := lastLineWith(stderr.String(), "replay waiting for Kafka")
	t.Logf("while paused: %s", line)
	if !strings.Contains(line, "partition=") || !strings.Contains(line, "offset=") || !strings.Contains(line, "end=") {
		t.Errorf("the waiting line does not name the partition, offset and end: %s", line)
	}
	pk.resume()
	var err error
	select {
	case err = <-done:
	case <-time.After(120 * time.Second):
		t.Fatal("the replay did not finish after the broker resumed")
	}
	if err != nil {
		t.Fatalf("replay: %v\n%s\nstderr:\n%s", err, stdout.String(), tail(stderr.String(), 20))
	}
	t.Logf("replay:\n%s", stdout.String())
	if want := fmt.Sprintf("%d events read", len(events)); !strings.Contains(stdout.String(), want) {
		t.Errorf("summary lacks %q:\n%s", want, stdout.String())
	}
	if want := fmt.Sprintf("applied %d,", s.mustCount(`SELECT count(*) FROM events WHERE seq IS NOT NULL OR type LIKE 'chat.notification.%'`)); !strings.Contains(stdout.String(), want) {
		t.Errorf("summary lacks %q:\n%s", want, stdout.String())
	}
	if n := s.mustCount(`SELECT count(*) FROM events`); n != int64(distinct(events)) {
		t.Errorf("%d events recorded, want %d", n, distinct(events))
	}
}

// A replay interrupted while the broker is paused returns an error (not a
// summary of success) promptly.
func TestReplayKafkaInterruptedWhileBrokerPausedFails(t *testing.T) {
	t.Parallel()
	pk := newPausingKafka(t, 3)
	s := newStackOn(t, pk.env)
	s.migrateUp()
	s.produceInSmallBatches(toMsgs(history("ki", 4, 6)))

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr testsupport.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"replay", "kafka", "-from", "earliest", "-live-group", "-"},
			s.getenv(map[string]string{"LOG_FORMAT": "text"}), nil, &stdout, &stderr)
	}()
	testsupport.WaitFor(t, 20*consumers.DefaultHistoryIdle, "the replay to report that it waits", func() (bool, string) {
		select {
		case err := <-done:
			t.Fatalf("the replay returned during the pause (%v):\n%s", err, stdout.String())
		default:
		}
		return strings.Contains(stderr.String(), "replay waiting for Kafka"), tail(stderr.String(), 3)
	})
	cancel()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "interrupted") {
			t.Errorf("interrupted replay returned %v, want an error saying it was interrupted", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the replay did not return within 20s of its context ending while the broker was paused")
	}
}

func lastLineWith(s, substr string) string {
	lines := strings.Split(s, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], substr) {
			return lines[i]
		}
	}
	return ""
}
