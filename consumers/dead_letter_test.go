package consumers_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/roomcast/roomcast/consumers"
)

// The tests of this file look at dead letters as an operator does: the
// dead-letter topic, the metrics, Problems (/readyz) and the log.

// A non-JSON value of about 1 MB at the head of a partition, which the
// events topic accepted, is dead-lettered (the dead-letter topic takes it:
// its max.message.bytes leaves room for the headers) with its key, value
// and a reason, counted once, and the partition goes on, its key included.
// Before, the dead-letter producer kept Sarama's 1 MiB limit, refused the
// copy with its headers and the message was retried every 100 ms forever.
func TestDeadLetterOfAMegabyteValue(t *testing.T) {
	env := newBatchEnv(t, 1)
	// What an operator gives a dead-letter topic: room for the largest
	// event plus the dead-lettering headers.
	limit := "2097152"
	if err := env.admin.AlterConfig(sarama.TopicResource, env.dlq, map[string]*string{"max.message.bytes": &limit}, false); err != nil {
		t.Fatal(err)
	}
	big := batchRecord{key: "room-big", value: bytes.Repeat([]byte("not json "), 1048400/9)}
	valid, count := someRooms([]string{"room-big", "room-b", "room-c"}, 20)
	if err := env.produce(append([]batchRecord{big}, valid...)); err != nil {
		t.Fatal(err)
	}
	n := env.startConsumer(nil, nil)

	batchWaitFor(t, 60*time.Second, "the valid events to be projected", func() bool { return env.countEvents() == len(valid) },
		func() string {
			return fmt.Sprintf("%d of %d projected; dead letters %v, failures %v, log:\n%s", env.countEvents(), len(valid),
				n.metric(t, "roomcast_events_dead_lettered_total"), n.metric(t, "roomcast_dead_letter_failures_total"), strings.Join(n.logs.lines("ERROR"), "\n"))
		})
	if got := env.roomEvents("room-big"); got != count["room-big"] {
		t.Errorf("room-big: %d events projected, want %d", got, count["room-big"])
	}
	dead := env.dlqMessages()
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	d := dead[0]
	if string(d.Key) != big.key || !bytes.Equal(d.Value, big.value) {
		t.Errorf("dead letter: key %q, %d bytes; want key %q and the original %d bytes", d.Key, len(d.Value), big.key, len(big.value))
	}
	if r := header(d, "reason_poisoned"); !strings.HasPrefix(r, "invalid event") {
		t.Errorf("reason_poisoned = %q, want the contract violation", r)
	}
	if got := header(d, "topic_poisoned"); got != env.topic {
		t.Errorf("topic_poisoned = %q, want %q", got, env.topic)
	}
	if got := header(d, "handler_poisoned"); got != "project" {
		t.Errorf("handler_poisoned = %q, want project", got)
	}
	if got := n.metric(t, "roomcast_events_dead_lettered_total", "reason", "invalid"); got != 1 {
		t.Errorf("roomcast_events_dead_lettered_total{reason=invalid} = %v, want 1", got)
	}
	if got := n.metric(t, "roomcast_events_consumed_total"); got != float64(len(valid)+1) {
		t.Errorf("roomcast_events_consumed_total = %v, want %d", got, len(valid)+1)
	}
}

// A missing dead-letter topic: the message stays unacknowledged and its
// room's later events wait, the partition's other rooms go on, the metrics
// and Problems say why; once the topic exists the dead letter is published
// and counted once, and the room goes on.
func TestDeadLetterWaitsForAMissingTopic(t *testing.T) {
	env := newBatchEnv(t, 1)
	if err := env.admin.DeleteTopic(env.dlq); err != nil {
		t.Fatal(err)
	}
	batchWaitFor(t, 30*time.Second, "the dead-letter topic to be gone", func() bool {
		topics, err := env.admin.ListTopics()
		_, exists := topics[env.dlq]
		return err == nil && !exists
	}, func() string { return "still listed" })

	bad := batchRecord{key: "room-a", value: []byte(`{"specversion": "1.0", "id": "broken`)}
	valid, count := someRooms([]string{"room-a", "room-b", "room-c"}, 30)
	if err := env.produce(append([]batchRecord{bad}, valid...)); err != nil {
		t.Fatal(err)
	}
	n := env.startConsumer(nil, func(c *consumers.Config) { c.StallAfter = 50 * time.Millisecond })

	others := count["room-b"] + count["room-c"]
	batchWaitFor(t, 60*time.Second, "the other rooms projected and the dead letter reported waiting", func() bool {
		return env.countEvents() == others && n.metric(t, "roomcast_dead_letters_waiting") == 1 &&
			n.metric(t, "roomcast_consumer_stalled", "cause", "dead_letter") == 1 && len(n.problems()) > 0
	}, func() string {
		return fmt.Sprintf("%d of %d projected, waiting %v, stalled %v, problems %q", env.countEvents(), others,
			n.metric(t, "roomcast_dead_letters_waiting"), n.metric(t, "roomcast_consumer_stalled", "cause", "dead_letter"), n.problems())
	})
	if got := env.roomEvents("room-a"); got != 0 {
		t.Errorf("room-a: %d events projected while its dead letter waits, want 0", got)
	}
	// The partition stall (its room's message waits) may be listed too.
	if p := linesWith(n.problems(), "dead letter"); len(p) != 1 || !strings.Contains(p[0], "dead-letter topic "+env.dlq+" does not exist") {
		t.Errorf("problems %q, want one dead-letter line saying the dead-letter topic does not exist", n.problems())
	}
	if got := n.metric(t, "roomcast_dead_letter_failures_total", "cause", "missing_topic"); got < 1 {
		t.Errorf("roomcast_dead_letter_failures_total{cause=missing_topic} = %v, want at least 1", got)
	}
	if got := n.metric(t, "roomcast_events_dead_lettered_total"); got != 0 {
		t.Errorf("roomcast_events_dead_lettered_total = %v before the broker has the dead letter, want 0", got)
	}
	if errs := n.logs.lines("ERROR"); len(errs) > 0 {
		t.Errorf("%d ERROR lines while the dead letter waits, want none:\n%s", len(errs), strings.Join(errs, "\n"))
	}

	if err := env.admin.CreateTopic(env.dlq, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: -1}, false); err != nil {
		t.Fatal(err)
	}
	batchWaitFor(t, 60*time.Second, "the dead letter published and room-a projected", func() bool {
		return env.countEvents() == len(valid) && n.metric(t, "roomcast_events_dead_lettered_total") == 1
	}, func() string {
		return fmt.Sprintf("%d of %d projected, dead-lettered %v, failures %v", env.countEvents(), len(valid),
			n.metric(t, "roomcast_events_dead_lettered_total"), n.metric(t, "roomcast_dead_letter_failures_total"))
	})
	env.waitCommitted(30 * time.Second)
	dead := env.dlqMessages()
	if len(dead) != 1 || string(dead[0].Key) != bad.key || !bytes.Equal(dead[0].Value, bad.value) {
		t.Errorf("dead-letter topic holds %d messages, want the bad one once", len(dead))
	}
	if got := n.metric(t, "roomcast_dead_letters_waiting"); got != 0 {
		t.Errorf("roomcast_dead_letters_waiting = %v after publishing, want 0", got)
	}
	if p := n.problems(); len(p) != 0 {
		t.Errorf("problems %q after publishing, want none", p)
	}
	if got := n.metric(t, "roomcast_consumer_stalled", "cause", "dead_letter"); got != 0 {
		t.Errorf("roomcast_consumer_stalled{cause=dead_letter} = %v after publishing, want 0", got)
	}
}

// linesWith returns the lines that contain s.
func linesWith(lines []string, s string) []string {
	var out []string
	for _, l := range lines {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}
