package consumers_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/internal/chattest"
)

// Events that cannot be stored, at the head of the partitions ahead of a
// backlog of their rooms, end in the dead-letter topic with their reason;
// every other event is projected once, in its room's order, and every
// partition is committed to its end. One is refused by the decoder (a
// number Postgres' numeric cannot hold, which Postgres would refuse with
// SQLSTATE 22003), the other by Postgres itself (a constraint an operator
// added: the decoder cannot know it). Neither is retried as if Postgres were
// down: that would go on forever, and hold its room behind it.
func TestEventsPostgresRefusesEndInTheDeadLetterTopic(t *testing.T) {
	const partitions, perRoom = 2, 500
	env := newBatchEnv(t, partitions)
	env.logLevel = slog.LevelError // every retry of a refused event logs an error
	if err := env.db.Exec(`ALTER TABLE events ADD CONSTRAINT no_hostile_source CHECK (source <> '/hostile')`).Error; err != nil {
		t.Fatal(err)
	}
	rooms := batchRooms(6)
	numeric := chattest.MessageCreated(rooms[0].room, "hostile-numeric", "x").With("x", json.Number("1e1000000"))
	constrained := chattest.MessageCreated(rooms[1].room, "hostile-constrained", "y")
	constrained.Extra = map[string]any{"source": "/hostile"}
	hostile := map[string][]string{ // id -> what its reason_poisoned says
		numeric.ID:     {"invalid event: data.x 1e1000000: number out of Postgres' numeric range"},
		constrained.ID: {"refused by the event store: ", `violates check constraint "no_hostile_source"`, "(SQLSTATE 23514)"},
	}
	records := []batchRecord{eventRecord(numeric), eventRecord(constrained)}
	valid := map[string]string{}
	records = append(records, interleave(rooms, perRoom, valid)...)
	if err := env.produce(records); err != nil {
		t.Fatal(err)
	}

	env.start("worker")
	batchWaitFor(t, 3*time.Minute, "the valid events projected and the hostile ones dead-lettered",
		func() bool { return env.countEvents() >= len(valid) && env.dlqSize() >= len(hostile) },
		func() string {
			return fmt.Sprintf("%d of %d events projected, %d of %d dead-lettered", env.countEvents(), len(valid), env.dlqSize(), len(hostile))
		})
	env.waitCommitted(60 * time.Second)
	env.checkRooms(validOrder(env.kafkaOrder(), valid), rooms)

	ids := map[string]string{string(numeric.JSON()): numeric.ID, string(constrained.JSON()): constrained.ID}
	for _, msgs := range env.readTopic(env.dlq) {
		for _, m := range msgs {
			id, ok := ids[string(m.Value)]
			if !ok {
				t.Errorf("dead-lettered: key %s, reason %q, value %.120s", m.Key, header(m, "reason_poisoned"), m.Value)
				continue
			}
			reason := header(m, "reason_poisoned")
			for _, want := range hostile[id] {
				if !strings.Contains(reason, want) {
					t.Errorf("dead letter %s: reason %q, want it to say %q", id, reason, want)
				}
			}
			if strings.ContainsAny(reason, "\n\r") || len(reason) > 300 {
				t.Errorf("dead letter %s: reason %q is not one short line", id, reason)
			}
			delete(ids, string(m.Value))
		}
	}
	for _, id := range ids {
		t.Errorf("event %s was not dead-lettered (or more than once)", id)
	}
}
