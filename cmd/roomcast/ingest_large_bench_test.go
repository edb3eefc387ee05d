package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/roomcast/roomcast/consumers"
	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
)

// Issue "Nothing stalls": memory stays flat under any backlog of 1 MB
// messages. The sizes of the backlogs of BenchmarkIngestLargeMessages.
const (
	largeRooms = 48 // rooms of the backlog, over the 12 partitions
	// largeFiller is the length of the text an event's unknown field
	// carries: the event's value is ~1.0 MB, under the topic's default
	// max.message.bytes (1 MiB plus 12 bytes).
	largeFiller = 1_000_000
	// largeTopicLimit is Kafka's (and the in-process broker's) default
	// max.message.bytes: one record batch, so one ~1 MB message.
	largeTopicLimit = 1048588
	// largeDLQLimit is the dead-letter topic's max.message.bytes: a bit
	// above the events topic's, for the headers a dead letter adds to the
	// message it carries.
	largeDLQLimit = largeTopicLimit + 64<<10
)

// largeBacklogs are the backlog sizes compared (peak RSS should not follow
// them): 150 and 600, or INGEST_BENCH_LARGE="n n ...".
func largeBacklogs(b *testing.B) []int {
	v := os.Getenv("INGEST_BENCH_LARGE")
	if v == "" {
		return []int{150, 600}
	}
	var sizes []int
	for _, f := range strings.Fields(v) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			b.Fatalf("INGEST_BENCH_LARGE: %q is not a positive number", f)
		}
		sizes = append(sizes, n)
	}
	return sizes
}

// BenchmarkIngestLargeMessages measures roomcast's peak RSS (VmHWM of the
// `roomcast run` subprocess, default GOMEMLIMIT of 256 MiB) while it drains a
// backlog of ~1 MB messages in a 12-partition topic, for two backlog sizes:
//
//   - valid-N: N chat.message.created events over 48 rooms whose data
//     carries an unknown field of 1,000,000 bytes of text that compresses
//     well (each value ~1.0 MB), EVENT_MAX_BYTES=2MiB so that they are
//     valid. Every event must be stored (events rows, distinct ids) and
//     delivered (the fake receives each message id, each room's seqs in
//     order), nothing dead-lettered. Reported: peak-RSS-MB and events/s
//     (first consumed -> everything stored and delivered).
//   - non-json-N: N non-JSON values of 1,048,400 bytes at the default
//     EVENT_MAX_BYTES (256 KiB): every one is dead-lettered (as invalid) to a
//     dead-letter topic whose max.message.bytes is 64 KiB above the events
//     topic's (a dead letter is the message plus headers). The dead-letter
//     topic must hold N messages, roomcast_events_dead_lettered_total must
//     be N, nothing stored. Reported: peak-RSS-MB and dead-letters/s.
//
// Target (issue "Nothing stalls"): peak RSS about the same for both sizes
// and below ~300 MB. Each run's topics are deleted after it (the in-process
// broker keeps them in the benchmark's memory). ns/op is a whole run,
// producing the backlog included. INGEST_BENCH_LARGE="150 600 1200" sets
// the backlog sizes.
func BenchmarkIngestLargeMessages(b *testing.B) {
	st := startIngestStack(b)
	for _, valid := range []bool{true, false} {
		for _, n := range largeBacklogs(b) {
			kind := "valid"
			if !valid {
				kind = "non-json"
			}
			b.Run(fmt.Sprintf("%s-%d", kind, n), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					rss, rate := st.runLarge(b, fmt.Sprintf("large-%s-%d-%d", kind, n, i), n, valid)
					b.ReportMetric(rss, "peak-RSS-MB")
					if valid {
						b.ReportMetric(rate, "events/s")
					} else {
						b.ReportMetric(rate, "dead-letters/s")
					}
				}
			})
		}
	}
}

// runLarge produces n ~1 MB messages (valid events, or non-JSON values),
// runs roomcast over them until each is stored and delivered, or
// dead-lettered, and returns roomcast's peak RSS (MB) and the messages per
// second from the first consumed.
func (st *ingestStack) runLarge(b *testing.B, name string, n int, valid bool) (float64, float64) {
	b.Helper()
	topic, dbURL := st.prepare(b, name)
	dlq := topic + ".dlq"
	admin, err := sarama.NewClusterAdmin(st.kafka.Brokers(), sarama.NewConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = admin.Close() }()
	limit := strconv.Itoa(largeDLQLimit)
	if err := admin.CreateTopic(dlq, &sarama.TopicDetail{
		NumPartitions: 1, ReplicationFactor: 1, ConfigEntries: map[string]*string{"max.message.bytes": &limit},
	}, false); err != nil {
		b.Fatalf("create %s: %v", dlq, err)
	}
	defer func() {
		for _, t := range []string{topic, dlq} {
			if err := admin.DeleteTopic(t); err != nil {
				b.Logf("delete topic %s: %v", t, err)
			}
		}
	}()
	overrides := map[string]string{"KAFKA_DLQ_TOPIC": dlq}
	if valid {
		overrides["EVENT_MAX_BYTES"] = "2MiB"
	}
	maps.Copy(overrides, benchEnv(b)) // INGEST_BENCH_ENV, as for BenchmarkIngest

	began := time.Now()
	ids := produceLarge(b, st.kafka.Brokers(), topic, name, n, valid)
	b.Logf("%s: produced %d messages of ~1 MB to %s in %v", name, n, topic, time.Since(began).Round(time.Millisecond))

	db, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	st.pusher.Reset()
	p := st.startRoomcast(b, name, topic, dbURL, overrides)
	first := p.waitConsumed(b, name)
	stopProgress := p.startProgress(name, first, st.pusher, db)
	defer stopProgress()
	stopPeaks := p.samplePeaks("roomcast_kafka_in_flight_bytes", "go_memstats_heap_inuse_bytes", "go_memstats_sys_bytes")
	defer stopPeaks()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var m metrics
	if valid {
		if err := st.pusher.WaitForEvents(ctx, n); err != nil {
			b.Fatalf("%s: %d of %d events delivered: %v\n%s", name, len(st.pusher.Events()), n, err, p.tail(30))
		}
		waitStoredAndDelivered(b, ctx, db, name, n)
	} else {
		for {
			if m, err = p.scrape(); err == nil && m.sum("roomcast_events_dead_lettered_total") >= float64(n) {
				break
			}
			if p.exited() {
				b.Fatalf("%s: roomcast exited: %v\n%s", name, p.err, p.tail(30))
			}
			if ctx.Err() != nil {
				b.Fatalf("%s: %v of %d dead-lettered within 10 minutes\n%s", name, m.sum("roomcast_events_dead_lettered_total"), n, p.tail(30))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	elapsed := time.Since(first)
	stopProgress()
	peaks := stopPeaks()
	rss := p.peakRSSMB(b)
	if m, err = p.scrape(); err != nil {
		b.Fatalf("%s: /metrics: %v", name, err)
	}

	var stored, distinct, storedBytes int64
	if err := db.QueryRow(ctx, `SELECT count(*), count(DISTINCT id), coalesce(sum(pg_column_size(data)), 0) FROM events`).Scan(&stored, &distinct, &storedBytes); err != nil {
		b.Fatalf("%s: count events: %v", name, err)
	}
	dead := m.sum("roomcast_events_dead_lettered_total")
	if valid {
		if stored != int64(n) || distinct != int64(n) {
			b.Fatalf("%s: %d events rows (%d distinct ids), want %d", name, stored, distinct, n)
		}
		if dead != 0 {
			b.Fatalf("%s: %v events dead-lettered\n%s", name, dead, p.tail(30))
		}
		delivered := map[string]bool{}
		for _, e := range st.pusher.Events() {
			var payload struct{ ID string }
			if err := json.Unmarshal([]byte(e.Data), &payload); err != nil {
				b.Fatalf("%s: pusher event data %q: %v", name, e.Data, err)
			}
			delivered[payload.ID] = true
		}
		for _, id := range ids {
			if !delivered[id] {
				b.Fatalf("%s: message %s was not delivered", name, id)
			}
		}
		want := map[string]int{}
		for k := range n {
			want[domain.RoomChannel(ingestRoom(name, k%largeRooms))]++
		}
		checkRoomOrder(b, name, st.pusher.Events(), want)
	} else {
		if got := topicSize(b, st.kafka.Brokers(), dlq); got != int64(n) || dead != float64(n) {
			b.Fatalf("%s: %d messages in %s, %v counted dead-lettered; want %d", name, got, dlq, dead, n)
		}
		if stored != 0 {
			b.Fatalf("%s: %d events stored from non-JSON values", name, stored)
		}
	}
	if waiting := m.sum("roomcast_dead_letters_waiting"); waiting != 0 {
		b.Fatalf("%s: %v dead letters waiting", name, waiting)
	}
	p.stop(b)
	rate := float64(n) / elapsed.Seconds()
	b.Logf("%s: %d messages of ~1 MB %s in %v (%.1f/s) after the first was consumed; peak RSS %.1f MB; "+
		"sampled every 100 ms, at most: %.1f MB held by the subscriber, %.1f MB of heap in use, %.1f MB obtained from the OS by the Go runtime; "+
		"events table %.1f MB (compressed); dead-letter publish failures %v",
		name, n, map[bool]string{true: "stored and delivered", false: "dead-lettered"}[valid], elapsed.Round(time.Millisecond), rate, rss,
		peaks["roomcast_kafka_in_flight_bytes"]/1e6, peaks["go_memstats_heap_inuse_bytes"]/1e6, peaks["go_memstats_sys_bytes"]/1e6,
		float64(storedBytes)/1e6, m.sum("roomcast_dead_letter_failures_total"))
	return rss, rate
}

// produceLarge produces n ~1 MB messages over largeRooms rooms (keyed by
// room) and returns the message ids of the valid events. A producer sized
// to the topic's limit puts one such message in each record batch.
func produceLarge(b *testing.B, brokers []string, topic, name string, n int, valid bool) []string {
	b.Helper()
	cfg := consumers.KafkaConfig{Brokers: brokers}.ProducerConfig()
	cfg.Producer.MaxMessageBytes = largeTopicLimit
	producer, err := sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = producer.Close() }()
	// Text that compresses well (as Postgres stores it), with nothing
	// that JSON escapes.
	filler := strings.Repeat("an attachment roomcast does not know, kept as it came; ", largeFiller/55+1)[:largeFiller]
	// 1,048,400 bytes (bigHostile), as in the chaos test: the largest that
	// the events topic takes in one record batch.
	junk := append([]byte("not JSON: "), bytes.Repeat([]byte("0123456789abcdef"), (bigHostile-10)/16)...)
	junk = append(junk, bytes.Repeat([]byte("x"), bigHostile-len(junk))...)
	var ids []string
	const chunk = 24
	for start := 0; start < n; start += chunk {
		var msgs []*sarama.ProducerMessage
		if valid {
			var events []*chattest.Event
			for k := start; k < min(n, start+chunk); k++ {
				room := ingestRoom(name, k%largeRooms)
				id := ingestMessageID(room, k/largeRooms)
				events = append(events, chattest.MessageCreated(room, id, "a message with a large attachment").With("attachment", filler))
				ids = append(ids, id)
			}
			msgs = ingestMessages(topic, events)
		} else {
			for k := start; k < min(n, start+chunk); k++ {
				msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(ingestRoom(name, k%largeRooms)), Value: sarama.ByteEncoder(junk)})
			}
		}
		sendIngestMessages(b, producer, msgs)
	}
	return ids
}

// waitStoredAndDelivered waits until n events are in Postgres and no
// delivery is owed.
func waitStoredAndDelivered(b *testing.B, ctx context.Context, db *pgxpool.Pool, name string, n int) {
	b.Helper()
	for {
		var projected, undelivered int64
		if err := db.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM deliveries WHERE delivered_at IS NULL)`).Scan(&projected, &undelivered); err != nil {
			b.Fatalf("%s: count events and deliveries: %v", name, err)
		}
		if projected >= int64(n) && undelivered == 0 {
			return
		}
		if ctx.Err() != nil {
			b.Fatalf("%s: %d of %d events projected, %d deliveries pending", name, projected, n, undelivered)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// samplePeaks scrapes roomcast's /metrics every 100 ms until the returned
// function (idempotent) is called, which returns the largest value seen of
// each series.
func (p *ingestProc) samplePeaks(series ...string) func() map[string]float64 {
	done, stopped := make(chan struct{}), make(chan struct{})
	peaks := map[string]float64{}
	go func() {
		defer close(stopped)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if m, err := p.scrape(); err == nil {
				for _, s := range series {
					peaks[s] = max(peaks[s], m.sum(s))
				}
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	return func() map[string]float64 {
		once.Do(func() { close(done) })
		<-stopped
		return peaks
	}
}
