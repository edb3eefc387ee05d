package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/roomcast/roomcast/consumers"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/fakepusher"
	"github.com/roomcast/roomcast/internal/localstack"
)

// Issue "Consume and project at the speed of the disk": the targets these
// benchmarks check against.
//
//   - >= 25,000 events/s end to end (BenchmarkIngest "events/s")
//   - >= 20x the one-at-a-time configuration (BenchmarkIngest "batched/1x1")
//   - peak RSS of `roomcast run` < 300 MB (BenchmarkIngest "peak-RSS-MB")
//   - p99 produce -> Pusher < 100 ms + the injected round trip
//     (BenchmarkIngestLatency "p99-ms")
//
// Run them with `make bench-ingest` (or `make bench`), not `make test`:
//
//	go test -run '^$' -bench 'Ingest' -benchtime 1x -timeout 30m ./cmd/roomcast/
//
// While a run goes on, every 10 s a progress line goes to stderr (rates,
// batch sizes and transaction times, the outbox, CPU of roomcast, Postgres
// and this process, what the Postgres sessions wait for, the statements most
// often running), and after each backlog run how each table was read
// (sequential against index scans): where the time goes.
const (
	ingestRooms       = 200
	ingestPartitions  = 12
	ingestBacklog     = 200000 // events of the batched run
	ingestBacklog1x1  = 20000  // events of the one-at-a-time run
	ingestPusherDelay = 30 * time.Millisecond
	ingestAppID       = "bench"
	ingestKey         = "bench-key"
	ingestSecret      = "bench-secret"
)

// BenchmarkIngest measures roomcast end to end on this machine, the real
// binary as a subprocess (`roomcast run`), against a throwaway Postgres with
// default durability (fsync and synchronous_commit on), an in-process Kafka
// with a 12-partition topic and the Pusher fake answering every call after
// 30 ms.
//
// A backlog of 200,000 contract events over 200 rooms (per room: 87%
// message.created, 10% message.edited of the room's previous message, 2%
// member.joined, 1% notifications: user notifications to 3 users and rooms
// notifications to 4 rooms) is in the topic before roomcast starts. The clock
// runs from the first consumed event (roomcast_events_consumed_total > 0 on
// the subprocess's /metrics) until every event is in Postgres (count of
// events = the distinct ids produced), the outbox is empty (roomcast deletes
// what Pusher accepted) and the fake has received every Pusher event owed
// (one per channel: a notification to 3 users is 3).
//
// Reported: events/s, pusher-calls/event (fake calls / events) and
// peak-RSS-MB (VmHWM of the subprocess just before SIGTERM), then the same
// three for a one-at-a-time configuration (PROJECTION_BATCH_MAX=1,
// KAFKA_MAX_IN_FLIGHT_PER_PARTITION=1, PUSHER_BATCH_EVENTS=1) over a backlog
// of 20,000 events, prefixed "1x1-", and batched/1x1, the ratio of the two
// events/s.
//
// Targets (issue "Consume and project at the speed of the disk"):
// >= 25,000 events/s end to end, >= 20x the one-at-a-time configuration,
// peak RSS < 300 MB. ns/op is the batched run's measured window.
//
// For tuning runs, INGEST_BENCH_ENV="NAME=value ..." sets roomcast settings
// of the batched run, and INGEST_BENCH_ONLY_BATCHED=1 skips the one-at-a-time
// run, INGEST_BENCH_PARTITIONS=n uses a topic of n partitions instead of 12,
// INGEST_BENCH_STATEMENTS=1 loads pg_stat_statements and prints the costliest
// statements and the WAL written, and INGEST_BENCH_PG="name=value ..." sets
// Postgres server settings, and INGEST_BENCH_BIN=path runs that roomcast
// binary instead of building this tree's (to compare two builds run after
// run); GOGC, GOMEMLIMIT and GODEBUG pass through to roomcast.
func BenchmarkIngest(b *testing.B) {
	b.StopTimer()
	st := startIngestStack(b)
	for i := 0; i < b.N; i++ {
		batched := st.runBacklog(b, fmt.Sprintf("batched-%d", i), ingestBacklog, benchEnv(b), true)
		b.ReportMetric(batched.eventsPerSec, "events/s")
		b.ReportMetric(batched.callsPerEvent, "pusher-calls/event")
		b.ReportMetric(batched.peakRSSMB, "peak-RSS-MB")
		if os.Getenv("INGEST_BENCH_ONLY_BATCHED") != "" {
			continue // tuning runs: no one-at-a-time comparison
		}
		single := st.runBacklog(b, fmt.Sprintf("1x1-%d", i), ingestBacklog1x1, map[string]string{
			"PROJECTION_BATCH_MAX":              "1",
			"KAFKA_MAX_IN_FLIGHT_PER_PARTITION": "1",
			"PUSHER_BATCH_EVENTS":               "1",
		}, false)
		b.ReportMetric(single.eventsPerSec, "1x1-events/s")
		b.ReportMetric(single.callsPerEvent, "1x1-pusher-calls/event")
		b.ReportMetric(single.peakRSSMB, "1x1-peak-RSS-MB")
		b.ReportMetric(batched.eventsPerSec/single.eventsPerSec, "batched/1x1")
	}
}

// BenchmarkIngestLatency measures produce -> Pusher latency with roomcast
// (the real binary, batched default configuration) running: message.created
// events over 200 rooms are produced at a steady 2,000 events/s for 15 s, each
// one's produce time (just before the SyncProducer call) recorded by its
// message id, and the latency of an event is the fake Pusher's
// Event.ReceivedAt (first delivery of that message id) minus its produce
// time.
//
// ReceivedAt is when the call reaches the fake, before the fake applies its
// injected 30 ms latency and answers: the figures exclude the round trip of
// the call that carries the event (but include waiting for earlier calls of
// the same room, which roomcast sends one at a time). Add 30 ms for "Pusher
// has answered".
//
// Reported: p50-ms and p99-ms (arrival at the fake) and produced-events/s
// (the rate actually held). Target (issue "Consume and project at the speed
// of the disk"): p99 produce -> Pusher < 100 ms + the injected round trip,
// that is p99-ms < 100 here.
func BenchmarkIngestLatency(b *testing.B) {
	b.StopTimer()
	st := startIngestStack(b)
	for i := 0; i < b.N; i++ {
		lat, rate := st.runLatency(b, fmt.Sprintf("latency-%d", i), 2000, 15*time.Second)
		b.Logf("%d events at %.0f events/s: p50 %v, p90 %v, p99 %v, max %v (arrival at the fake; +%v for its answer)",
			len(lat), rate, quantile(lat, 0.50), quantile(lat, 0.90), quantile(lat, 0.99), lat[len(lat)-1], ingestPusherDelay)
		b.ReportMetric(ms(quantile(lat, 0.50)), "p50-ms")
		b.ReportMetric(ms(quantile(lat, 0.99)), "p99-ms")
		b.ReportMetric(rate, "produced-events/s")
	}
}

// benchEnv reads INGEST_BENCH_ENV ("NAME=value NAME=value"): settings for the
// batched run, to compare tunings without editing the benchmark.
func benchEnv(b *testing.B) map[string]string {
	env := map[string]string{}
	for _, kv := range strings.Fields(os.Getenv("INGEST_BENCH_ENV")) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			b.Fatalf("INGEST_BENCH_ENV: %q is not NAME=value", kv)
		}
		env[k] = v
	}
	return env
}

// runLatency starts roomcast, produces message.created events at rate for
// duration and returns each event's produce -> fake Pusher arrival latency,
// sorted, and the rate actually held.
func (st *ingestStack) runLatency(b *testing.B, name string, rate int, duration time.Duration) ([]time.Duration, float64) {
	b.Helper()
	topic, dbURL := st.prepare(b, name)
	p := st.startRoomcast(b, name, topic, dbURL, nil)
	p.waitReady(b)

	producer := newIngestProducer(b, st.kafka.Brokers())
	defer func() { _ = producer.Close() }()
	// Warm up: one event per room, so that the group has its partitions and
	// the connections are open before the clock runs.
	var warm []*chattest.Event
	for r := range ingestRooms {
		room := ingestRoom(name, r)
		warm = append(warm, chattest.MessageCreated(room, room+"-warm", "warm up"))
	}
	sendIngestMessages(b, producer, ingestMessages(topic, warm))
	waitCtx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	err := st.pusher.WaitForEvents(waitCtx, len(warm))
	cancel()
	if err != nil {
		b.Fatalf("%s: warm-up: %v\n%s", name, err, p.tail(30))
	}
	st.pusher.Reset()

	db, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	stopProgress := p.startProgress(name, time.Now(), st.pusher, db)
	defer stopProgress()

	total := rate * int(duration/time.Millisecond) / 1000
	b.StartTimer()
	producedAt, held := produceSteady(b, producer, topic, rate, total, func(i int) (*chattest.Event, string) {
		room := ingestRoom(name, i%ingestRooms)
		id := fmt.Sprintf("%s-l%d", room, i)
		return chattest.MessageCreated(room, id, "latency probe "+strconv.Itoa(i)), id
	})

	waitCtx, cancel = context.WithTimeout(context.Background(), 5*time.Minute)
	err = st.pusher.WaitForEvents(waitCtx, total)
	cancel()
	b.StopTimer()
	stopProgress()
	if err != nil {
		b.Fatalf("%s: delivered: %v\n%s", name, err, p.tail(30))
	}
	var lat []time.Duration
	seen := map[string]bool{}
	for _, e := range st.pusher.Events() {
		var payload struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal([]byte(e.Data), &payload); err != nil {
			b.Fatalf("%s: pusher event data %q: %v", name, e.Data, err)
		}
		at, ok := producedAt[payload.ID]
		if !ok || seen[payload.ID] {
			continue
		}
		seen[payload.ID] = true
		lat = append(lat, e.ReceivedAt.Sub(at))
	}
	if len(lat) != total {
		b.Fatalf("%s: latency of %d events, want %d", name, len(lat), total)
	}
	slices.Sort(lat)
	p.stop(b)
	return lat, held
}

// produceSteady produces total events at rate events/s (a tick every 10 ms
// sends as many as the rate owes by then, so a late tick is caught up and
// the average rate holds). event(i) builds the i-th event and names it; the
// result maps each name to its produce time (just before the SyncProducer
// call that carried it), with the rate actually held.
func produceSteady(b *testing.B, producer sarama.SyncProducer, topic string, rate, total int, event func(i int) (*chattest.Event, string)) (map[string]time.Time, float64) {
	b.Helper()
	producedAt := make(map[string]time.Time, total)
	ticker := time.NewTicker(10 * time.Millisecond)
	defer ticker.Stop()
	start := time.Now()
	sent := 0
	for sent < total {
		<-ticker.C
		due := min(total, int(time.Since(start).Seconds()*float64(rate)))
		if due <= sent {
			continue
		}
		chunk := make([]*chattest.Event, 0, due-sent)
		names := make([]string, 0, due-sent)
		for ; sent < due; sent++ {
			e, name := event(sent)
			chunk = append(chunk, e)
			names = append(names, name)
		}
		msgs := ingestMessages(topic, chunk)
		at := time.Now()
		sendIngestMessages(b, producer, msgs)
		for _, name := range names {
			producedAt[name] = at
		}
	}
	return producedAt, float64(total) / time.Since(start).Seconds()
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ingestStack is what the benchmarks share: Postgres (default durability),
// Kafka, the Pusher fake and the built binary.
type ingestStack struct {
	pg     *localstack.Postgres
	kafka  *localstack.Kafka
	pusher *fakepusher.Server
	bin    string
}

func startIngestStack(b *testing.B) *ingestStack {
	b.Helper()
	return startIngestStackWith(b, nil)
}

// startIngestStackWith is startIngestStack with Postgres server settings of
// the benchmark's own (INGEST_BENCH_PG still applies on top).
func startIngestStackWith(b *testing.B, pgSettings map[string]string) *ingestStack {
	b.Helper()
	st := &ingestStack{bin: os.Getenv("INGEST_BENCH_BIN")}
	if st.bin == "" {
		st.bin = buildBinary(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var pgCfg localstack.PostgresConfig // default durability
	pgCfg.Settings = maps.Clone(pgSettings)
	if pgCfg.Settings == nil {
		pgCfg.Settings = map[string]string{}
	}
	if os.Getenv("INGEST_BENCH_STATEMENTS") != "" {
		pgCfg.Settings["shared_preload_libraries"] = "pg_stat_statements"
	}
	for _, kv := range strings.Fields(os.Getenv("INGEST_BENCH_PG")) {
		k, v, _ := strings.Cut(kv, "=")
		pgCfg.Settings[k] = v
	}
	pg, err := localstack.StartPostgres(ctx, pgCfg)
	if err != nil {
		b.Fatalf("postgres: %v", err)
	}
	b.Cleanup(func() { _ = pg.Stop() })
	st.pg = pg
	kafka, err := localstack.StartKafka(localstack.KafkaConfig{Topics: map[string]int32{"chat.events.dlq": 1}})
	if err != nil {
		b.Fatalf("kafka: %v", err)
	}
	b.Cleanup(kafka.Close)
	st.kafka = kafka
	pusher, err := fakepusher.Start(fakepusher.Config{AppID: ingestAppID, Key: ingestKey, Secret: ingestSecret})
	if err != nil {
		b.Fatalf("fake pusher: %v", err)
	}
	b.Cleanup(func() { _ = pusher.Close() })
	pusher.SetLatency(ingestPusherDelay)
	st.pusher = pusher
	return st
}

// prepare creates a fresh database (migrated with `roomcast migrate up`) and
// a fresh 12-partition topic for one run.
func (st *ingestStack) prepare(b *testing.B, name string) (topic, dbURL string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	suffix := fmt.Sprintf("%s_%d", strings.ReplaceAll(name, "-", "_"), time.Now().UnixNano())
	dbURL, err := st.pg.CreateDatabase(ctx, "ingest_"+suffix)
	if err != nil {
		b.Fatal(err)
	}
	migrate := exec.CommandContext(ctx, st.bin, "migrate", "up")
	migrate.Env = []string{"DATABASE_URL=" + dbURL, "LOG_LEVEL=warn"}
	if out, err := migrate.CombinedOutput(); err != nil {
		b.Fatalf("roomcast migrate up: %v\n%s", err, out)
	}
	topic = "chat.events.ingest." + suffix
	admin, err := sarama.NewClusterAdmin(st.kafka.Brokers(), sarama.NewConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = admin.Close() }()
	partitions := int32(ingestPartitions)
	if v := os.Getenv("INGEST_BENCH_PARTITIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("INGEST_BENCH_PARTITIONS: %q is not a positive number", v)
		}
		partitions = int32(n)
	}
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}, false); err != nil {
		b.Fatal(err)
	}
	return topic, dbURL
}

type ingestResult struct {
	eventsPerSec, callsPerEvent, peakRSSMB float64
}

// runBacklog produces a backlog of n events, then runs roomcast over it until
// everything is projected and delivered.
func (st *ingestStack) runBacklog(b *testing.B, name string, n int, overrides map[string]string, timed bool) ingestResult {
	b.Helper()
	topic, dbURL := st.prepare(b, name)
	began := time.Now()
	backlog := ingestBacklogFor(name, n)
	producer := newIngestProducer(b, st.kafka.Brokers())
	for start := 0; start < len(backlog.events); start += 1000 {
		sendIngestMessages(b, producer, ingestMessages(topic, backlog.events[start:min(start+1000, len(backlog.events))]))
	}
	_ = producer.Close()
	b.Logf("%s: produced %d events (%d Pusher events, %d outbox rows owed) to %s in %v",
		name, n, backlog.pusherEvents, backlog.deliveries, topic, time.Since(began).Round(time.Millisecond))

	db, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	st.pusher.Reset()
	statements := os.Getenv("INGEST_BENCH_STATEMENTS") != ""
	if statements {
		if _, err := db.Exec(context.Background(), `CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset(); SELECT pg_stat_reset_shared('wal'); CHECKPOINT`); err != nil {
			b.Fatalf("pg_stat_statements: %v", err)
		}
	}

	p := st.startRoomcast(b, name, topic, dbURL, overrides)
	// The clock starts at the first consumed event.
	first := p.waitConsumed(b, name)
	if timed {
		b.StartTimer()
	}
	b.Logf("%s: first event consumed %v after start", name, first.Sub(p.started).Round(time.Millisecond))
	cpu, err := p.cpuMeter(db)
	if err != nil {
		b.Fatal(err)
	}
	cpuAtFirst := cpu()

	stopProgress := p.startProgress(name, first, st.pusher, db)
	defer stopProgress()

	// Every Pusher event owed received by the fake, then (normally already
	// true) every event in Postgres and every outbox row delivered.
	waitCtx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	if err := st.pusher.WaitForEvents(waitCtx, backlog.pusherEvents); err != nil {
		b.Fatalf("%s: %v\n%s", name, err, p.tail(30))
	}
	var projected, undelivered int64
	for {
		if err := db.QueryRow(waitCtx, `SELECT count(*) FROM events`).Scan(&projected); err != nil {
			b.Fatalf("%s: count events: %v", name, err)
		}
		if err := db.QueryRow(waitCtx, `SELECT count(*) FROM deliveries WHERE delivered_at IS NULL`).Scan(&undelivered); err != nil {
			b.Fatalf("%s: count deliveries: %v", name, err)
		}
		if projected >= int64(n) && undelivered == 0 {
			break
		}
		if waitCtx.Err() != nil {
			b.Fatalf("%s: %d of %d events projected, %d deliveries pending", name, projected, n, undelivered)
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(first)
	if timed {
		b.StopTimer()
	}
	cpuAtEnd := cpu()
	stopProgress()
	calls := len(st.pusher.Calls())
	received := len(st.pusher.Events())

	// Checks: exactly the ids produced, every outbox row owed written and
	// delivered once (and deleted), nothing parked or dead-lettered.
	var distinct, left int64
	if err := db.QueryRow(waitCtx, `SELECT count(DISTINCT id), (SELECT count(*) FROM deliveries) FROM events`).Scan(&distinct, &left); err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	if projected != int64(n) || distinct != int64(n) {
		b.Fatalf("%s: %d events rows (%d distinct ids), want %d", name, projected, distinct, n)
	}
	var m metrics
	for wait := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if m, err = p.scrape(); err != nil {
			b.Fatalf("%s: /metrics: %v", name, err)
		}
		// The counter follows the delete's commit by a moment.
		if m.sum("roomcast_deliveries_delivered_total") >= float64(backlog.deliveries) || time.Now().After(wait) {
			break
		}
	}
	wantLeft := int64(0) // delivered rows deleted, unless DELIVERY_RETENTION keeps them
	if v := overrides["DELIVERY_RETENTION"]; v != "" && v != "0" {
		wantLeft = int64(backlog.deliveries)
	}
	if delivered := m.sum("roomcast_deliveries_delivered_total"); left != wantLeft || delivered != float64(backlog.deliveries) {
		b.Fatalf("%s: %d outbox rows left, %v delivered; want %d left and %d delivered", name, left, delivered, wantLeft, backlog.deliveries)
	}
	if dl := m.sum("roomcast_events_dead_lettered_total"); dl != 0 {
		b.Fatalf("%s: %v events dead-lettered\n%s", name, dl, p.tail(30))
	}
	rss := p.peakRSSMB(b)
	p.stop(b)
	logTableStats(name, db)
	if statements {
		logStatementStats(name, db)
	}

	res := ingestResult{
		eventsPerSec:  float64(n) / elapsed.Seconds(),
		callsPerEvent: float64(calls) / float64(n),
		peakRSSMB:     rss,
	}
	b.Logf("%s: %d events projected and delivered in %v: %.0f events/s; %d Pusher calls (%.3f per event) carrying %d events (%d owed); "+
		"%.0f batches, %.1f events per transaction; peak RSS %.1f MB; CPU per event: roomcast %.0f µs, postgres %.0f µs, benchmark process (Kafka, Pusher fake) %.0f µs; deliveries handed over %.0f, read back from the outbox %.0f",
		name, n, elapsed.Round(time.Millisecond), res.eventsPerSec, calls, res.callsPerEvent, received, backlog.pusherEvents,
		m.sum("roomcast_projection_batch_events_count"),
		m.sum("roomcast_projection_batch_events_sum")/max(1, m.sum("roomcast_projection_batch_events_count")), rss,
		(cpuAtEnd["roomcast"]-cpuAtFirst["roomcast"])*1e6/float64(n), (cpuAtEnd["postgres"]-cpuAtFirst["postgres"])*1e6/float64(n),
		(cpuAtEnd["bench"]-cpuAtFirst["bench"])*1e6/float64(n),
		m.sum("roomcast_dispatcher_deliveries_total", `source="handoff"`), m.sum("roomcast_dispatcher_deliveries_total", `source="read"`))
	return res
}

// backlogPlan is a generated backlog and what it owes.
type backlogPlan struct {
	events       []*chattest.Event
	pusherEvents int // events the fake must receive: one per channel
	deliveries   int // outbox rows: one per room event, one per notification (<= 100 channels)
}

// ingestBacklogFor interleaves the rooms as live traffic would; the k-th
// event of a room is a member.joined every 50 (a new user each time), a
// notification every 100 (alternately to 3 users and to 4 rooms), an edit of
// the room's previous message every 10, otherwise a message.created.
func ingestBacklogFor(name string, n int) backlogPlan {
	bl := backlogPlan{events: make([]*chattest.Event, 0, n)}
	for i := range n {
		r, k := i%ingestRooms, i/ingestRooms
		room := ingestRoom(name, r)
		var e *chattest.Event
		owed := 1
		switch {
		case k%50 == 0:
			e = chattest.MemberJoined(room, fmt.Sprintf("u-%s-%d-%d", name, r, k))
		case k%100 == 99 && (k/100)%2 == 0:
			users := []string{fmt.Sprintf("u-%s-%d-a", name, r), fmt.Sprintf("u-%s-%d-b", name, r), fmt.Sprintf("u-%s-%d-c", name, r)}
			e = chattest.UserNotification(users, "mention in "+room)
			owed = len(users)
		case k%100 == 99:
			rooms := []string{room}
			for j := 1; j < 4; j++ {
				rooms = append(rooms, ingestRoom(name, (r+j)%ingestRooms))
			}
			e = chattest.RoomsNotification(rooms, "announcement")
			owed = len(rooms)
		case k%10 == 5:
			e = chattest.MessageEdited(room, ingestMessageID(room, k-1), fmt.Sprintf("edited message %d of %s", k-1, room))
		default:
			e = chattest.MessageCreated(room, ingestMessageID(room, k), fmt.Sprintf("hello <3 from the benchmark, message %d of %s", k, room))
		}
		bl.events = append(bl.events, e)
		bl.pusherEvents += owed
		bl.deliveries++
	}
	return bl
}

func ingestRoom(name string, r int) string      { return fmt.Sprintf("room-%s-%d", name, r) }
func ingestMessageID(room string, k int) string { return fmt.Sprintf("m-%s-%d", room, k) }

func newIngestProducer(b *testing.B, brokers []string) sarama.SyncProducer {
	b.Helper()
	// roomcast's own producer settings: keyed, murmur2 like the Java client.
	producer, err := sarama.NewSyncProducer(brokers, consumers.KafkaConfig{Brokers: brokers}.ProducerConfig())
	if err != nil {
		b.Fatal(err)
	}
	return producer
}

// ingestMessages turns events into Kafka messages keyed as the contract says
// (chattest Event.Key).
func ingestMessages(topic string, events []*chattest.Event) []*sarama.ProducerMessage {
	msgs := make([]*sarama.ProducerMessage, len(events))
	for i, e := range events {
		msgs[i] = &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(e.Key()), Value: sarama.ByteEncoder(e.JSON())}
	}
	return msgs
}

// sendIngestMessages produces msgs with one SendMessages call.
func sendIngestMessages(b *testing.B, producer sarama.SyncProducer, msgs []*sarama.ProducerMessage) {
	b.Helper()
	if err := producer.SendMessages(msgs); err != nil {
		b.Fatalf("produce: %v", err)
	}
}

// ingestProc is one `roomcast run` subprocess.
type ingestProc struct {
	cmd     *exec.Cmd
	addr    string
	log     string
	started time.Time
	done    chan struct{}
	err     error // Wait's result, once done is closed
}

func (st *ingestStack) startRoomcast(b *testing.B, name, topic, dbURL string, overrides map[string]string) *ingestProc {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	env := map[string]string{
		"KAFKA_BROKERS":        strings.Join(st.kafka.Brokers(), ","),
		"KAFKA_TOPIC":          topic,
		"KAFKA_CONSUMER_GROUP": "roomcast-" + topic,
		"DATABASE_URL":         dbURL,
		"PUSHER_APP_ID":        ingestAppID,
		"PUSHER_KEY":           ingestKey,
		"PUSHER_SECRET":        ingestSecret,
		"PUSHER_HOST":          st.pusher.Host(),
		"PUSHER_USE_TLS":       "false",
		"HTTP_ADDR":            addr,
		"LOG_LEVEL":            "warn",
	}
	// The Go runtime's own settings pass through, to compare GC tunings.
	for _, k := range []string{"GOGC", "GOMEMLIMIT", "GODEBUG"} {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	for k, v := range overrides {
		env[k] = v
	}
	p := &ingestProc{addr: addr, log: filepath.Join(b.TempDir(), name+".log"), done: make(chan struct{})}
	out, err := os.Create(p.log)
	if err != nil {
		b.Fatal(err)
	}
	p.cmd = exec.Command(st.bin, "run")
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		_ = out.Close()
		b.Fatalf("start %s: %v", st.bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		_ = out.Close()
		close(p.done)
	}()
	b.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// waitConsumed waits (up to 2 minutes) until roomcast has consumed its
// first event and returns when it saw that.
func (p *ingestProc) waitConsumed(b *testing.B, name string) time.Time {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if time.Now().After(deadline) {
			b.Fatalf("%s: nothing consumed within 2 minutes\n%s", name, p.tail(30))
		}
		if p.exited() {
			b.Fatalf("%s: roomcast exited: %v\n%s", name, p.err, p.tail(30))
		}
		if m, err := p.scrape(); err == nil && m.sum("roomcast_events_consumed_total") > 0 {
			return time.Now()
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *ingestProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *ingestProc) tail(n int) string {
	out, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (p *ingestProc) scrape() (metrics, error) {
	code, body, err := httpGet(p.addr, "/metrics")
	if err != nil {
		return nil, err
	}
	if code != 200 {
		return nil, fmt.Errorf("GET /metrics: %d", code)
	}
	return parseMetrics(body), nil
}

func (p *ingestProc) waitReady(b *testing.B) {
	b.Helper()
	deadline := time.Now().Add(60 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		if p.exited() {
			b.Fatalf("roomcast exited before it was ready: %v\n%s", p.err, p.tail(30))
		}
		code, body, err := httpGet(p.addr, "/readyz")
		if err == nil && code == 200 {
			return
		}
		last = fmt.Sprintf("%d %s %v", code, strings.TrimSpace(body), err)
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("/readyz not 200 within 60s; last answer: %s", last)
}

// cpuMeter returns a function that reads the CPU seconds used so far by
// roomcast, the Postgres server (all its processes) and this process.
func (p *ingestProc) cpuMeter(db *pgxpool.Pool) (func() map[string]float64, error) {
	var pgPid int
	if err := db.QueryRow(context.Background(), `SELECT pg_backend_pid()`).Scan(&pgPid); err != nil {
		return nil, fmt.Errorf("postgres pid: %w", err)
	}
	postmaster := procParent(pgPid)
	return func() map[string]float64 {
		return map[string]float64{
			"roomcast": procCPUSeconds(p.cmd.Process.Pid),
			"postgres": procTreeCPUSeconds(postmaster),
			"bench":    procCPUSeconds(os.Getpid()),
		}
	}, nil
}

// peakRSSMB is the subprocess's VmHWM (peak resident set) in MB.
func (p *ingestProc) peakRSSMB(b *testing.B) float64 {
	b.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		b.Fatalf("peak RSS: %v", err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			if err != nil {
				b.Fatalf("peak RSS: %q: %v", line, err)
			}
			return kb / 1024
		}
	}
	b.Fatalf("peak RSS: no VmHWM in /proc/%d/status", p.cmd.Process.Pid)
	return 0
}

// stop sends SIGTERM and requires exit status 0 within a minute.
func (p *ingestProc) stop(b *testing.B) {
	b.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		b.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		b.Fatalf("roomcast did not exit within a minute of SIGTERM\n%s", p.tail(30))
	}
	if p.err != nil {
		var exit *exec.ExitError
		if errors.As(p.err, &exit) {
			b.Fatalf("roomcast exited with status %d on SIGTERM\n%s", exit.ExitCode(), p.tail(30))
		}
		b.Fatalf("roomcast on SIGTERM: %v", p.err)
	}
}

// startProgress runs logProgress until the returned function (idempotent) is
// called.
func (p *ingestProc) startProgress(name string, since time.Time, pusher *fakepusher.Server, db *pgxpool.Pool) func() {
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		p.logProgress(name, since, pusher, db, done)
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		<-stopped
	}
}

// logProgress prints (progressf), every 10 s until done, where the run stands: consumed
// and projected rates, batch sizes and transaction times, the outbox backlog
// and Pusher calls, the CPU used by roomcast, by Postgres (every process of
// the cluster) and by this process (Kafka, the Pusher fake, the producer),
// and what the Postgres sessions of the run's database were doing, sampled
// every 100 ms (on average how many were running, waiting for a lock, for
// the WAL, or idle in a transaction waiting for roomcast).
func (p *ingestProc) logProgress(name string, since time.Time, pusher *fakepusher.Server, db *pgxpool.Pool, done <-chan struct{}) {
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	sample := time.NewTicker(100 * time.Millisecond)
	defer sample.Stop()
	var prev metrics
	prevAt := since
	cpu, err := p.cpuMeter(db)
	if err != nil {
		progressf("%s: %v", name, err)
		return
	}
	prevCPU := cpu()
	waits, statements := map[string]int{}, map[string]int{}
	samples := 0
	for {
		select {
		case <-done:
			return
		case <-sample.C:
			rows, err := db.Query(context.Background(), `
				SELECT CASE WHEN state = 'active' THEN coalesce(wait_event_type || ':' || wait_event, 'running') ELSE state END, count(*)
				FROM pg_stat_activity
				WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND state <> 'idle'
				GROUP BY 1`)
			if err != nil {
				continue
			}
			for rows.Next() {
				var what string
				var n int
				if rows.Scan(&what, &n) == nil {
					waits[what] += n
				}
			}
			rows.Close()
			rows, err = db.Query(context.Background(), `
				SELECT left(regexp_replace(query, '\s+', ' ', 'g'), 100), count(*)
				FROM pg_stat_activity
				WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND state = 'active'
				GROUP BY 1`)
			if err == nil {
				for rows.Next() {
					var q string
					var n int
					if rows.Scan(&q, &n) == nil {
						statements[q] += n
					}
				}
				rows.Close()
			}
			samples++
			continue
		case <-tick.C:
		}
		m, err := p.scrape()
		if err != nil {
			progressf("%s: progress: %v", name, err)
			continue
		}
		now := time.Now()
		secs := now.Sub(prevAt).Seconds()
		rate := func(series string) float64 { return (m.sum(series) - prev.sum(series)) / secs }
		batches := m.sum("roomcast_projection_batch_events_count") - prev.sum("roomcast_projection_batch_events_count")
		batchEvents := m.sum("roomcast_projection_batch_events_sum") - prev.sum("roomcast_projection_batch_events_sum")
		batchSecs := m.sum("roomcast_projection_batch_seconds_sum") - prev.sum("roomcast_projection_batch_seconds_sum")
		nowCPU := cpu()
		cpuPct := func(k string) float64 { return 100 * (nowCPU[k] - prevCPU[k]) / secs }
		keys := make([]string, 0, len(waits))
		for k := range waits {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var sessions []string
		for _, k := range keys {
			sessions = append(sessions, fmt.Sprintf("%s %.2f", k, float64(waits[k])/float64(max(samples, 1))))
		}
		progressf("%s: +%v: consumed %.0f (%.0f/s), projected %.0f (%.0f/s), %.0f batches of %.1f events, %.1f ms each; "+
			"deliveries pending %.0f, delivered %.0f/s, pusher calls %.0f/s (%.0f in flight), dispatcher holds %.0f; fake has %d events; "+
			"CPU roomcast %.0f%%, postgres %.0f%%, bench process %.0f%%; postgres sessions (avg): %s",
			name, now.Sub(since).Round(time.Second),
			m.sum("roomcast_events_consumed_total"), rate("roomcast_events_consumed_total"),
			m.sum("roomcast_projection_batched_events_total"), rate("roomcast_projection_batched_events_total"),
			batches, batchEvents/max(1, batches), 1000*batchSecs/max(1, batches),
			m.sum("roomcast_deliveries_pending"), rate("roomcast_deliveries_delivered_total"),
			rate("roomcast_pusher_calls_total"), m.sum("roomcast_pusher_calls_in_flight"),
			m.sum("roomcast_dispatcher_held_deliveries"), len(pusher.Events()),
			cpuPct("roomcast"), cpuPct("postgres"), cpuPct("bench"), strings.Join(sessions, ", "))
		type stmt struct {
			q string
			n int
		}
		var top []stmt
		for q, n := range statements {
			top = append(top, stmt{q, n})
		}
		slices.SortFunc(top, func(a, b stmt) int { return b.n - a.n })
		for _, t := range top[:min(len(top), 5)] {
			progressf("%s:     %.2f running %q", name, float64(t.n)/float64(max(samples, 1)), t.q)
		}
		prev, prevAt, prevCPU = m, now, nowCPU
		clear(waits)
		clear(statements)
		samples = 0
	}
}

// logTableStats prints how each table was read during the run (sequential
// against index scans) and when it was last analysed.
func logTableStats(name string, db *pgxpool.Pool) {
	rows, err := db.Query(context.Background(), `
		SELECT relname, n_live_tup, seq_scan, seq_tup_read, coalesce(idx_scan, 0), n_tup_ins, n_tup_upd,
		       coalesce(to_char(last_autoanalyze, 'HH24:MI:SS'), '-'), autoanalyze_count, autovacuum_count
		FROM pg_stat_user_tables ORDER BY relname`)
	if err != nil {
		progressf("%s: table stats: %v", name, err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var rel, analyzed string
		var live, seqScan, seqRead, idxScan, ins, upd, analyses, vacuums int64
		if err := rows.Scan(&rel, &live, &seqScan, &seqRead, &idxScan, &ins, &upd, &analyzed, &analyses, &vacuums); err != nil {
			progressf("%s: table stats: %v", name, err)
			return
		}
		progressf("%s: table %-13s %7d rows, %6d seq scans reading %10d rows, %7d index scans, %7d inserts, %7d updates, autoanalyze %d (last %s), autovacuum %d",
			name, rel, live, seqScan, seqRead, idxScan, ins, upd, analyses, analyzed, vacuums)
	}
}

// logStatementStats prints the statements that took most of Postgres's time
// during the run (INGEST_BENCH_STATEMENTS=1 loads pg_stat_statements).
func logStatementStats(name string, db *pgxpool.Pool) {
	var records, fpi, bytes, syncs int64
	if err := db.QueryRow(context.Background(), `SELECT wal_records, wal_fpi, wal_bytes::bigint, wal_sync FROM pg_stat_wal`).Scan(&records, &fpi, &bytes, &syncs); err == nil {
		progressf("%s: WAL %d records, %d full-page images, %.0f MB, %d syncs", name, records, fpi, float64(bytes)/1e6, syncs)
	}
	rows, err := db.Query(context.Background(), `
		SELECT total_exec_time, 100 * total_exec_time / sum(total_exec_time) OVER (), calls, rows, wal_bytes::bigint,
		       left(regexp_replace(query, '\s+', ' ', 'g'), 110)
		FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
		ORDER BY total_exec_time DESC LIMIT 15`)
	if err != nil {
		progressf("%s: statement stats: %v", name, err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var ms, pct float64
		var calls, n, wal int64
		var q string
		if err := rows.Scan(&ms, &pct, &calls, &n, &wal, &q); err != nil {
			progressf("%s: statement stats: %v", name, err)
			return
		}
		progressf("%s: statement %8.0f ms %4.1f%% %6d calls %8d rows %6.0f MB WAL: %s", name, ms, pct, calls, n, float64(wal)/1e6, q)
	}
}

// progressf prints a progress line to stderr at once: a benchmark's log is
// shown only when it ends, and cut to 10 lines.
func progressf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s ingest %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times (100 on
// every Linux architecture Go supports).
const clockTicks = 100

// procStat returns the fields of /proc/<pid>/stat after the command name
// (field 3, the state, is index 0), or nil.
func procStat(pid int) []string {
	if pid <= 0 {
		return nil
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := strings.LastIndexByte(string(raw), ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(raw[i+1:]))
}

// procCPUSeconds is the user and system CPU time of pid so far.
func procCPUSeconds(pid int) float64 {
	f := procStat(pid)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / clockTicks
}

func procParent(pid int) int {
	f := procStat(pid)
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// procTreeCPUSeconds is the CPU time of pid and its live children (a
// postmaster and its server processes), including children already reaped
// (cutime, cstime).
func procTreeCPUSeconds(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	total := procCPUSeconds(pid)
	if f := procStat(pid); len(f) >= 15 {
		cu, _ := strconv.ParseFloat(f[13], 64)
		cs, _ := strconv.ParseFloat(f[14], 64)
		total += (cu + cs) / clockTicks
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil || procParent(child) != pid {
			continue
		}
		total += procCPUSeconds(child)
	}
	return total
}
