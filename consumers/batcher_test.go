package consumers_test

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"github.com/roomcast/roomcast/consumers"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/testsupport"
	"github.com/roomcast/roomcast/projections"
)

// The tests of this file run the batched ingest path as the worker wires it
// (cmd/roomcast/worker.go): KeyedSubscriber with many messages of a room in
// flight -> Watermill router (dead letters, retries) -> Batcher -> one
// ProjectBatch transaction per batch, on a real Postgres and an in-process
// Kafka. They check what README's "Guarantees" promise: each room's events
// take effect once, in Kafka order, and an offset is committed only once its
// event is durable.

// batchPerKey is KAFKA_MAX_IN_FLIGHT_PER_KEY in these tests: many events of a
// room in flight at once, so that a batch can carry several of them.
const batchPerKey = 50

// batchEnv is one test's Kafka topics, consumer group and database.
type batchEnv struct {
	t          *testing.T
	db         *gorm.DB // the tests' own pool; each node opens its own
	dbURL      string
	brokers    []string
	topic, dlq string
	group      string
	logLevel   slog.Level
	client     sarama.Client // for the tests' own look-ups
	admin      sarama.ClusterAdmin
}

func newBatchEnv(t *testing.T, partitions int32) *batchEnv {
	t.Helper()
	k := testsupport.Kafka(t, map[string]int32{"chat.events": partitions, "chat.events.dlq": 1})
	db, dbURL := testsupport.Database(t, 4)
	client, err := sarama.NewClient(k.Brokers, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	adminClient, err := sarama.NewClient(k.Brokers, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	admin, err := sarama.NewClusterAdminFromClient(adminClient)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	return &batchEnv{t: t, db: db, dbURL: dbURL, brokers: k.Brokers, topic: k.Topics["chat.events"], dlq: k.Topics["chat.events.dlq"],
		group: "roomcast-batch", logLevel: slog.LevelWarn, client: client, admin: admin}
}

// dlqSize is the number of dead letters so far.
func (e *batchEnv) dlqSize() int {
	e.t.Helper()
	n, err := e.client.GetOffset(e.dlq, 0, sarama.OffsetNewest)
	if err != nil {
		e.t.Fatal(err)
	}
	return int(n)
}

// waitProjected waits until events holds want rows, or more than expectDead
// events were dead-lettered (then the checks that follow say what went wrong).
func (e *batchEnv) waitProjected(want, expectDead int, timeout time.Duration) {
	e.t.Helper()
	batchWaitFor(e.t, timeout, "the events to be projected", func() bool { return e.countEvents() >= want || e.dlqSize() > expectDead },
		func() string {
			return fmt.Sprintf("%d of %d projected, %d dead letters", e.countEvents(), want, e.dlqSize())
		})
}

// batchNode is one worker process: its own connection pool (with the node's
// name as application_name), projector, batcher, consumer and metrics
// registry, on the environment's database and consumer group.
type batchNode struct {
	name        string
	reg         *prometheus.Registry
	stopOnce    sync.Once
	stopCons    context.CancelFunc
	stopBatch   context.CancelFunc
	closeDB     func()
	consDone    chan error
	batcherDone chan error
}

// start runs a node until stop (or the end of the test). name is also the
// application_name of its connections: letters, digits and dashes.
func (e *batchEnv) start(name string) *batchNode {
	t := e.t
	t.Helper()
	n := &batchNode{name: name, reg: prometheus.NewRegistry(), consDone: make(chan error, 1), batcherDone: make(chan error, 1)}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: e.logLevel})).With(slog.String("node", name))
	u, err := url.Parse(e.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", name)
	u.RawQuery = q.Encode()
	db, err := projections.Open(t.Context(), u.String(), 8)
	if err != nil {
		t.Fatal(err)
	}
	n.closeDB = func() { _ = projections.Close(db) }
	projector := projections.NewProjector(db, log, n.reg)
	batcher := consumers.NewBatcher(projector, consumers.BatcherConfig{MaxBatch: 500, Concurrency: 2, Registerer: n.reg})
	consumer, err := consumers.New(consumers.Config{
		Kafka: consumers.KafkaConfig{Brokers: e.brokers}, Topic: e.topic, DLQTopic: e.dlq, ConsumerGroup: e.group,
		MaxInFlightPerKey: batchPerKey, Logger: log, Registerer: n.reg,
	}, batcher)
	if err != nil {
		n.closeDB()
		t.Fatal(err)
	}
	batchCtx, stopBatch := context.WithCancel(context.Background())
	consCtx, stopCons := context.WithCancel(context.Background())
	n.stopBatch, n.stopCons = stopBatch, stopCons
	go func() { n.batcherDone <- batcher.Run(batchCtx) }()
	go func() { n.consDone <- consumer.Run(consCtx) }()
	t.Cleanup(func() { n.stop(t) })
	return n
}

// stop stops the consumer, then the batcher (as the worker does: handlers in
// flight get their answers), and checks both stopped cleanly.
func (n *batchNode) stop(t *testing.T) {
	t.Helper()
	n.stopOnce.Do(func() {
		n.stopCons()
		select {
		case err := <-n.consDone:
			if err != nil {
				t.Errorf("%s: consumer stopped with %v", n.name, err)
			}
		case <-time.After(45 * time.Second):
			t.Errorf("%s: consumer still running 45s after its context ended", n.name)
		}
		n.stopBatch()
		select {
		case err := <-n.batcherDone:
			if err != nil {
				t.Errorf("%s: batcher stopped with %v", n.name, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s: batcher still running 10s after its context ended", n.name)
		}
		n.closeDB()
	})
}

// metric sums the values of a counter or gauge of the node's registry, over
// the series whose labels include the given ones ("name" "value" pairs).
func (n *batchNode) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// series counts the series of a metric of the node's registry.
func (n *batchNode) series(t *testing.T, name string) int {
	t.Helper()
	mfs, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}

// batchSizes returns the number of batch transactions and the events they
// carried (roomcast_projection_batch_events).
func (n *batchNode) batchSizes(t *testing.T) (batches uint64, events float64) {
	t.Helper()
	mfs, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "roomcast_projection_batch_events" {
			for _, m := range mf.GetMetric() {
				batches += m.GetHistogram().GetSampleCount()
				events += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return batches, events
}

// batchRecord is one Kafka message to produce, and its event id.
type batchRecord struct {
	id, key string
	value   []byte
}

func eventRecord(e *chattest.Event) batchRecord {
	return batchRecord{id: e.ID, key: e.Key(), value: e.JSON()}
}

// produce sends records in order, one request in flight, so that a key's
// records keep their order in its partition.
func (e *batchEnv) produce(records []batchRecord) error {
	cfg := consumers.KafkaConfig{Brokers: e.brokers}.ProducerConfig()
	// Idempotent, so that the topic holds each event once: under load a
	// produce request that times out is retried, and without idempotence
	// its messages can land twice, which these tests would count as
	// redeliveries by roomcast (and as a room's events out of Kafka order).
	cfg.Producer.Idempotent = true
	cfg.Net.MaxOpenRequests = 1
	producer, err := sarama.NewSyncProducer(e.brokers, cfg)
	if err != nil {
		return err
	}
	defer producer.Close()
	for chunk := range slices.Chunk(records, 500) {
		msgs := make([]*sarama.ProducerMessage, len(chunk))
		for i, r := range chunk {
			msgs[i] = &sarama.ProducerMessage{Topic: e.topic, Key: sarama.StringEncoder(r.key), Value: sarama.ByteEncoder(r.value)}
		}
		if err := producer.SendMessages(msgs); err != nil {
			return fmt.Errorf("produce to %s: %w", e.topic, err)
		}
	}
	return nil
}

// readTopic reads every message of topic up to its high-water marks, by
// partition, in offset order.
func (e *batchEnv) readTopic(topic string) map[int32][]*sarama.ConsumerMessage {
	t := e.t
	t.Helper()
	client, err := sarama.NewClient(e.brokers, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32][]*sarama.ConsumerMessage{}
	for _, p := range parts {
		hwm, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatal(err)
		}
		if hwm == 0 {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		for int64(len(out[p])) < hwm {
			select {
			case m := <-pc.Messages():
				out[p] = append(out[p], m)
			case <-time.After(20 * time.Second):
				t.Fatalf("%s/%d: read %d of %d messages", topic, p, len(out[p]), hwm)
			}
		}
		_ = pc.Close()
	}
	return out
}

// kafkaOrder is, per key (room), the values of the topic's messages in
// Kafka (offset) order.
func (e *batchEnv) kafkaOrder() map[string][]string {
	order := map[string][]string{}
	for _, msgs := range e.readTopic(e.topic) {
		for _, m := range msgs {
			order[string(m.Key)] = append(order[string(m.Key)], string(m.Value))
		}
	}
	return order
}

// offsets returns the group's committed offset and the high-water mark of
// every partition of the topic.
func (e *batchEnv) offsets() (committed, hwm map[int32]int64, err error) {
	parts, err := e.client.Partitions(e.topic)
	if err != nil {
		return nil, nil, err
	}
	resp, err := e.admin.ListConsumerGroupOffsets(e.group, map[string][]int32{e.topic: parts})
	if err != nil {
		return nil, nil, err
	}
	committed, hwm = map[int32]int64{}, map[int32]int64{}
	for _, p := range parts {
		if hwm[p], err = e.client.GetOffset(e.topic, p, sarama.OffsetNewest); err != nil {
			return nil, nil, err
		}
		committed[p] = -1
		if b := resp.GetBlock(e.topic, p); b != nil {
			committed[p] = b.Offset
		}
	}
	return committed, hwm, nil
}

// waitCommitted waits until the group has committed every partition up to
// its high-water mark: every message was acknowledged, so every dead letter
// was published too.
func (e *batchEnv) waitCommitted(timeout time.Duration) {
	t := e.t
	t.Helper()
	var committed, hwm map[int32]int64
	var err error
	batchWaitFor(t, timeout, "the group's committed offsets to reach the high-water marks", func() bool {
		committed, hwm, err = e.offsets()
		if err != nil {
			return false
		}
		for p, h := range hwm {
			if h > 0 && committed[p] != h { // an empty partition has nothing to commit
				return false
			}
		}
		return true
	}, func() string { return fmt.Sprintf("committed %v, high-water marks %v, err %v", committed, hwm, err) })
}

// inTransaction counts the connections of node that are in a transaction.
func (e *batchEnv) inTransaction(node string) int {
	e.t.Helper()
	var n int64
	if err := e.db.Raw(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = ? AND xact_start IS NOT NULL`,
		node).Scan(&n).Error; err != nil {
		e.t.Fatal(err)
	}
	return int(n)
}

func (e *batchEnv) countEvents() int {
	e.t.Helper()
	n, err := e.tryCountEvents()
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// tryCountEvents is countEvents for a wait across a Postgres restart: the
// pool's first query on a connection from before it fails.
func (e *batchEnv) tryCountEvents() (int, error) {
	var n int64
	err := e.db.Raw(`SELECT count(*) FROM events`).Scan(&n).Error
	return int(n), err
}

// batchWaitFor polls cond until it holds, or fails the test after timeout
// with what and the state state describes.
func batchWaitFor(t *testing.T, timeout time.Duration, what string, cond func() bool, state func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", timeout, what, state())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// roomScript writes a room's conversation: messages created, each edited a
// few times right after its create (an edit applies only after its create:
// out of order it would be dead-lettered as unknown_message), members
// joining and leaving. Every event changes something, so each takes the
// room's next seq. It keeps the state the events lead to.
type roomScript struct {
	room    string
	rng     *rand.Rand
	n       int               // messages created
	last    string            // the last message created
	edits   map[string]int    // message -> edits so far
	content map[string]string // message -> its content after the events so far
	member  map[string]bool   // user -> member after the events so far
}

func newRoomScript(room string, seed uint64) *roomScript {
	return &roomScript{room: room, rng: rand.New(rand.NewPCG(seed, 7)), edits: map[string]int{}, content: map[string]string{}, member: map[string]bool{}}
}

func (s *roomScript) next() *chattest.Event {
	r := s.rng.IntN(100)
	switch {
	case s.last == "" || r < 35:
		s.n++
		id := fmt.Sprintf("%s.m%d", s.room, s.n)
		s.last, s.content[id] = id, id+" v0"
		return chattest.MessageCreated(s.room, id, s.content[id])
	case r < 80:
		s.edits[s.last]++
		c := fmt.Sprintf("%s v%d", s.last, s.edits[s.last])
		s.content[s.last] = c
		return chattest.MessageEdited(s.room, s.last, c)
	default:
		u := fmt.Sprintf("u%d", s.rng.IntN(5))
		s.member[u] = !s.member[u]
		if s.member[u] {
			return chattest.MemberJoined(s.room, u)
		}
		return chattest.MemberLeft(s.room, u)
	}
}

// batchRooms returns n room scripts, seeded so that each test run writes the same conversations.
func batchRooms(n int) []*roomScript {
	rooms := make([]*roomScript, n)
	for i := range rooms {
		rooms[i] = newRoomScript(fmt.Sprintf("room-%c", 'a'+i), uint64(i+1))
	}
	return rooms
}

// interleave takes perRoom events from every room, round-robin, returns
// them as records and adds them to valid (Kafka value -> event id).
func interleave(rooms []*roomScript, perRoom int, valid map[string]string) []batchRecord {
	var records []batchRecord
	for range perRoom {
		for _, s := range rooms {
			r := eventRecord(s.next())
			valid[string(r.value)] = r.id
			records = append(records, r)
		}
	}
	return records
}

// storedEvent is a row of events as the checks read it; tx is the inserting
// transaction (xmin): the rows of one batch share it.
type storedEvent struct {
	ID             string
	RoomID         *string
	Seq            *int64
	KafkaPartition *int32
	KafkaOffset    *int64
	Tx             string
}

func (e *batchEnv) storedEvents() []storedEvent {
	e.t.Helper()
	var rows []storedEvent
	if err := e.db.Raw(`SELECT id, room_id, seq, kafka_partition, kafka_offset, xmin::text AS tx FROM events`).Scan(&rows).Error; err != nil {
		e.t.Fatal(err)
	}
	return rows
}

// checkRooms checks the read models against the Kafka order of the valid
// events: every one of them is in events exactly once and nothing else is;
// each room's seqs are 1..n, gap-free, given in its Kafka order; the
// messages hold their last edit and the members are those that joined last.
// want is, per room, the ids of its valid events in Kafka order.
func (e *batchEnv) checkRooms(want map[string][]string, rooms []*roomScript) []storedEvent {
	t := e.t
	t.Helper()
	rows := e.storedEvents()
	wantIDs := map[string]bool{}
	for _, ids := range want {
		for _, id := range ids {
			wantIDs[id] = true
		}
	}
	// Problems by kind, reported once per kind with a few examples.
	problems := map[string][]string{}
	report := func(kind, example string) { problems[kind] = append(problems[kind], example) }
	defer func() {
		for _, kind := range slices.Sorted(maps.Keys(problems)) {
			ex := problems[kind]
			t.Errorf("%s: %d, e.g. %s", kind, len(ex), strings.Join(ex[:min(len(ex), 3)], "; "))
		}
	}()
	seen := map[string]int{}
	byRoom := map[string][]storedEvent{}
	for _, r := range rows {
		seen[r.ID]++
		if !wantIDs[r.ID] {
			report("events stored that are not valid events of the topic", r.ID)
		}
		if r.RoomID == nil || r.Seq == nil || r.KafkaPartition == nil || r.KafkaOffset == nil {
			report("events stored without a room, a seq or a Kafka position (applied out of order: a leave before its join...)", r.ID)
			continue
		}
		byRoom[*r.RoomID] = append(byRoom[*r.RoomID], r)
	}
	for id := range wantIDs {
		switch n := seen[id]; {
		case n == 0:
			report("valid events missing from events", id)
		case n > 1:
			report("events stored more than once", fmt.Sprintf("%s %d times", id, n))
		}
	}
	for _, room := range slices.Sorted(maps.Keys(want)) {
		ids := want[room]
		got := byRoom[room]
		slices.SortFunc(got, func(a, b storedEvent) int { return cmp.Compare(*a.Seq, *b.Seq) })
		for i, r := range got {
			if *r.Seq != int64(i+1) {
				report("seqs not 1..n without gaps", fmt.Sprintf("%s: position %d has seq %d", room, i+1, *r.Seq))
			}
			if i < len(ids) && r.ID != ids[i] {
				report("seq order differs from Kafka order", fmt.Sprintf("%s: seq %d is %s, the room's event %d in Kafka is %s", room, *r.Seq, r.ID, i+1, ids[i]))
			}
			if i > 0 && (*r.KafkaPartition != *got[i-1].KafkaPartition || *r.KafkaOffset <= *got[i-1].KafkaOffset) {
				report("seq order goes back in the partition", fmt.Sprintf("%s: seq %d is at %d/%d, after seq %d at %d/%d", room, *r.Seq, *r.KafkaPartition, *r.KafkaOffset,
					*got[i-1].Seq, *got[i-1].KafkaPartition, *got[i-1].KafkaOffset))
			}
		}
		if len(got) != len(ids) {
			report("rooms with a number of events other than Kafka's", fmt.Sprintf("%s: %d stored, %d in Kafka", room, len(got), len(ids)))
		}
		var last int64
		if err := e.db.Raw(`SELECT last_seq FROM rooms WHERE room_id = ?`, room).Scan(&last).Error; err != nil {
			t.Fatal(err)
		}
		if last != int64(len(ids)) {
			t.Errorf("%s: rooms.last_seq = %d, want %d", room, last, len(ids))
		}
	}
	for _, s := range rooms {
		var msgs []struct{ ID, Content string }
		if err := e.db.Raw(`SELECT id, content FROM messages WHERE room_id = ?`, s.room).Scan(&msgs).Error; err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, m := range msgs {
			got[m.ID] = m.Content
		}
		if !maps.Equal(got, s.content) {
			var diff []string
			for id, c := range s.content {
				if got[id] != c {
					diff = append(diff, fmt.Sprintf("%s: %q, want %q", id, got[id], c))
				}
			}
			slices.Sort(diff)
			t.Errorf("%s: %d messages, want %d; wrong content: %v", s.room, len(got), len(s.content), diff[:min(len(diff), 5)])
		}
		var members []string
		if err := e.db.Raw(`SELECT user_id FROM room_members WHERE room_id = ? ORDER BY user_id`, s.room).Scan(&members).Error; err != nil {
			t.Fatal(err)
		}
		var wantMembers []string
		for u, in := range s.member {
			if in {
				wantMembers = append(wantMembers, u)
			}
		}
		slices.Sort(wantMembers)
		if !slices.Equal(members, wantMembers) {
			t.Errorf("%s: members %v, want %v", s.room, members, wantMembers)
		}
	}
	return rows
}

// validOrder turns the Kafka order of values into the Kafka order of the
// ids of the valid events among them (those in valid: value -> id).
func validOrder(order map[string][]string, valid map[string]string) map[string][]string {
	out := map[string][]string{}
	for key, values := range order {
		for _, v := range values {
			if id, ok := valid[v]; ok {
				out[key] = append(out[key], id)
			}
		}
	}
	return out
}

// dlqEmpty fails the test if anything was dead-lettered.
func (e *batchEnv) dlqEmpty() {
	e.t.Helper()
	for _, msgs := range e.readTopic(e.dlq) {
		for _, m := range msgs {
			e.t.Errorf("dead-lettered: key %s, reason %q, value %.120s", m.Key, header(m, "reason_poisoned"), m.Value)
		}
	}
}

func header(m *sarama.ConsumerMessage, key string) string {
	for _, h := range m.Headers {
		if string(h.Key) == key {
			return string(h.Value)
		}
	}
	return ""
}

// TestBatchKeepsRoomOrderWithManyEventsOfARoomInFlight: a backlog of a few
// rooms, each with up to 50 events in flight at once, is projected in
// batches that carry many events of a room, each room's events in Kafka
// order, each once.
func TestBatchKeepsRoomOrderWithManyEventsOfARoomInFlight(t *testing.T) {
	const partitions, perRoom = 2, 1500
	env := newBatchEnv(t, partitions)
	rooms := batchRooms(4)
	valid := map[string]string{}
	records := interleave(rooms, perRoom, valid)
	if err := env.produce(records); err != nil {
		t.Fatal(err)
	}
	total := len(records)

	began := time.Now()
	node := env.start("worker")
	env.waitProjected(total, 0, 60*time.Second)
	elapsed := time.Since(began)
	env.waitCommitted(15 * time.Second)

	order := env.kafkaOrder()
	want := validOrder(order, valid)
	rows := env.checkRooms(want, rooms)
	env.dlqEmpty()

	// Batching must really have carried several events of a room in one
	// transaction, else this test proves nothing about the turns.
	batches, events := node.batchSizes(t)
	mean := events / float64(batches)
	perTx := map[[2]string]int{} // (room, transaction) -> events
	for _, r := range rows {
		if r.RoomID != nil {
			perTx[[2]string{*r.RoomID, r.Tx}]++
		}
	}
	most, shared := 0, 0
	for _, n := range perTx {
		most = max(most, n)
		if n > 1 {
			shared += n
		}
	}
	t.Logf("%d events of %d rooms in %v: %d batches, %.1f events per batch; %d events shared a transaction with others of their room, up to %d of one room in one transaction",
		total, len(rooms), elapsed.Round(time.Millisecond), batches, mean, shared, most)
	if mean < 5*float64(len(rooms)) {
		t.Errorf("%.1f events per batch with %d rooms: batches did not carry several events of a room", mean, len(rooms))
	}
	if most < batchPerKey/5 || shared < total/2 {
		t.Errorf("at most %d events of one room in one transaction, %d of %d events shared one: want many events of a room per transaction", most, shared, total)
	}
	if d := node.metric(t, "roomcast_events_projected_total", "outcome", "duplicate"); d != 0 {
		t.Errorf("%v events projected twice", d)
	}
}

// badEvent is an invalid event among valid ones, and what its dead letter's
// reason_poisoned must say.
type badEvent struct {
	what   string
	record batchRecord
	reason []string // substrings of reason_poisoned
}

// TestBatchWithBadEventsCommitsTheRest: invalid events among the valid ones
// of the same rooms, many of each room in flight, are dead-lettered once
// each with a one-line reason; the valid ones around them are projected
// once, in order, and the stream goes on.
func TestBatchWithBadEventsCommitsTheRest(t *testing.T) {
	const partitions, perRoom = 2, 400
	env := newBatchEnv(t, partitions)
	env.logLevel = slog.LevelError // dead letters and reused ids are logged as warnings
	rooms := batchRooms(3)
	valid := map[string]string{}
	rng := rand.New(rand.NewPCG(42, 42))
	var records []batchRecord
	var bad []badEvent
	var conflicts []*chattest.Event // an id reused with another payload: not dead-lettered, the first one stands
	const notJSON, missingField, unknownMessage, invalidID = 0, 1, 2, 3
	addBad := func(s *roomScript, kind int) {
		i := len(bad)
		var b badEvent
		switch kind {
		case 0:
			b = badEvent{what: "not JSON", record: batchRecord{key: s.room, value: fmt.Appendf(nil, `{"specversion": "1.0", "id": "broken-%d`, i)},
				reason: []string{"invalid event: not JSON"}}
		case 1:
			e := chattest.MessageCreated(s.room, fmt.Sprintf("%s.x%d", s.room, i), "no author").With("authorId", nil)
			b = badEvent{what: "missing field", record: eventRecord(e), reason: []string{"invalid event", "data.authorId", "missing"}}
		case 2:
			ghost := fmt.Sprintf("%s.ghost%d", s.room, i)
			e := chattest.MessageEdited(s.room, ghost, "edit of a message that never existed")
			b = badEvent{what: "edit of an unknown message", record: eventRecord(e), reason: []string{"unknown message", ghost}}
		case 3:
			e := chattest.MemberJoined(s.room, "").With("userId", "not a valid id!")
			b = badEvent{what: "invalid id", record: eventRecord(e), reason: []string{"invalid event", "data.userId"}}
		}
		bad = append(bad, b)
		records = append(records, b.record)
	}
	// Bad events first, in runs, last and scattered: every room's turn
	// chain passes through dead letters.
	for _, s := range rooms {
		addBad(s, len(bad)%4)
	}
	for i := range perRoom {
		for _, s := range rooms {
			e := s.next()
			r := eventRecord(e)
			valid[string(r.value)] = r.id
			records = append(records, r)
			switch {
			case i%50 == 10: // a run of three
				for range 3 {
					addBad(s, len(bad)%4)
				}
			case rng.IntN(100) < 4:
				addBad(s, len(bad)%4)
			case i%100 == 20:
				// the id of the room's previous valid event, with another payload
				dup := chattest.MessageCreated(s.room, s.room+".impostor", "a second payload under a used id").WithID(e.ID)
				conflicts = append(conflicts, dup)
				records = append(records, eventRecord(dup))
			}
		}
	}
	for _, s := range rooms {
		addBad(s, len(bad)%4)
	}
	if err := env.produce(records); err != nil {
		t.Fatal(err)
	}
	good := len(valid)

	node := env.start("worker")
	env.waitProjected(good, len(bad), 30*time.Second)
	env.waitCommitted(15 * time.Second)

	checkDead := func() {
		dead := env.readTopic(env.dlq)[0]
		got := map[string][]*sarama.ConsumerMessage{}
		for _, m := range dead {
			got[string(m.Key)+"\x00"+string(m.Value)] = append(got[string(m.Key)+"\x00"+string(m.Value)], m)
		}
		for _, b := range bad {
			k := b.record.key + "\x00" + string(b.record.value)
			msgs := got[k]
			delete(got, k)
			if len(msgs) != 1 {
				t.Errorf("%s (%.80s): dead-lettered %d times, want once", b.what, b.record.value, len(msgs))
				continue
			}
			reason := header(msgs[0], "reason_poisoned")
			for _, want := range b.reason {
				if !strings.Contains(reason, want) {
					t.Errorf("%s: reason_poisoned %q does not say %q", b.what, reason, want)
				}
			}
			if strings.ContainsAny(reason, "\r\n") || len(reason) > 300 {
				t.Errorf("%s: reason_poisoned %q is not one short line", b.what, reason)
			}
		}
		for _, msgs := range got {
			for _, m := range msgs {
				t.Errorf("dead-lettered a valid event: key %s, reason %q, value %.120s", m.Key, header(m, "reason_poisoned"), m.Value)
			}
		}
	}
	checkDead()

	// The valid events are projected once each, in order; an id reused with
	// another payload keeps the first one.
	want := validOrder(env.kafkaOrder(), valid)
	env.checkRooms(want, rooms)
	for _, dup := range conflicts {
		var data string
		if err := env.db.Raw(`SELECT data::text FROM events WHERE id = ?`, dup.ID).Scan(&data).Error; err != nil {
			t.Fatal(err)
		}
		if strings.Contains(data, "impostor") {
			t.Errorf("event %s: the second payload under its id replaced the first: %s", dup.ID, data)
		}
	}
	if n := node.metric(t, "roomcast_event_id_conflicts_total"); n != float64(len(conflicts)) {
		t.Errorf("roomcast_event_id_conflicts_total = %v, want %d", n, len(conflicts))
	}
	t.Logf("%d valid events projected, %d bad ones dead-lettered, %d reused ids ignored", good, len(bad), len(conflicts))

	// The stream goes on, also when a room's last events are a bad one and
	// valid ones that reach the batcher before the bad one's dead letter is
	// acknowledged (publishing it takes a round trip to Kafka, decoding the
	// next ones does not): they wait for its turn, which only that ack
	// settles, with no batch left to run. One room at a time, so that no
	// other room's batch comes to look at them again.
	produceValid := func(s *roomScript, n int) {
		for range n {
			r := eventRecord(s.next())
			valid[string(r.value)] = r.id
			records = append(records, r)
		}
	}
	for round := range 6 {
		records = nil
		s := rooms[round%len(rooms)]
		addBad(s, []int{notJSON, unknownMessage}[round%2])
		produceValid(s, 2)
		if err := env.produce(records); err != nil {
			t.Fatal(err)
		}
		env.waitProjected(len(valid), len(bad), 10*time.Second)
	}
	env.waitCommitted(15 * time.Second)
	env.checkRooms(validOrder(env.kafkaOrder(), valid), rooms)
	checkDead()
}

// feeder produces the rooms' conversations in the background, keeping about
// lag events not yet projected, until stopped.
type feeder struct {
	env     *batchEnv
	rooms   []*roomScript
	valid   map[string]string // value -> id; the feeder's until done is closed
	stop    chan struct{}
	done    chan struct{}
	err     error
	mu      sync.Mutex
	created int
}

func (e *batchEnv) feed(rooms []*roomScript, lag int) *feeder {
	f := &feeder{env: e, rooms: rooms, valid: map[string]string{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		for {
			select {
			case <-f.stop:
				return
			default:
			}
			var n int64
			if err := e.db.Raw(`SELECT count(*) FROM events`).Scan(&n).Error; err != nil {
				f.err = err
				return
			}
			if f.produced()-int(n) >= lag {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			records := interleave(rooms, lag/len(rooms)/4, f.valid)
			if f.err = e.produce(records); f.err != nil {
				return
			}
			f.mu.Lock()
			f.created += len(records)
			f.mu.Unlock()
		}
	}()
	return f
}

func (f *feeder) produced() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.created
}

// finish stops producing and returns the events produced (value -> id).
func (f *feeder) finish(t *testing.T) map[string]string {
	t.Helper()
	close(f.stop)
	<-f.done
	if f.err != nil {
		t.Fatal(f.err)
	}
	return f.valid
}

// TestBatchRebalanceMidStream: a second worker joins the group while a
// backlog is being consumed, and leaves again while events keep coming: each
// partition changes hands twice with many events of its rooms in flight.
// Every event takes effect once, each room in Kafka order, none is delivered
// twice, and the group ends with every offset committed.
func TestBatchRebalanceMidStream(t *testing.T) {
	const partitions, lag = 4, 2000
	env := newBatchEnv(t, partitions)
	rooms := batchRooms(8)
	feed := env.feed(rooms, lag)
	t.Cleanup(func() {
		select {
		case <-feed.stop:
		default:
			close(feed.stop)
		}
		<-feed.done
	})
	batchWaitFor(t, 20*time.Second, "the backlog", func() bool { return feed.produced() >= lag },
		func() string { return fmt.Sprintf("%d produced", feed.produced()) })

	began := time.Now()
	a := env.start("A")
	projected := func(n *batchNode) int { return int(n.metric(t, "roomcast_projection_batched_events_total")) }
	batchWaitFor(t, 30*time.Second, "A to project", func() bool { return projected(a) >= 1000 },
		func() string { return fmt.Sprintf("A projected %d", projected(a)) })

	b := env.start("B")
	claimed := func(n *batchNode) int { return n.series(t, "roomcast_kafka_in_flight") }
	batchWaitFor(t, 30*time.Second, "B to get partitions and project", func() bool { return projected(b) >= 1000 },
		func() string { return fmt.Sprintf("A projected %d, B %d", projected(a), projected(b)) })
	joined := time.Since(began)
	b.stop(t) // B leaves mid-stream: the feeder keeps a backlog
	left := time.Since(began)
	batchWaitFor(t, 30*time.Second, "A to take B's partitions back", func() bool { return claimed(a) == partitions },
		func() string { return fmt.Sprintf("A holds %d partitions", claimed(a)) })
	back := time.Since(began)
	valid := feed.finish(t)
	total := len(valid)
	env.waitProjected(total, 0, 30*time.Second)
	env.waitCommitted(15 * time.Second)

	env.checkRooms(validOrder(env.kafkaOrder(), valid), rooms)
	env.dlqEmpty()
	dup := a.metric(t, "roomcast_events_projected_total", "outcome", "duplicate") + b.metric(t, "roomcast_events_projected_total", "outcome", "duplicate")
	t.Logf("%d events in %v; B had projected %d by %v, left at %v; A held every partition again at %v and projected %d; %v delivered twice (projected as duplicates)",
		total, time.Since(began).Round(time.Millisecond), projected(b), joined.Round(time.Millisecond), left.Round(time.Millisecond),
		back.Round(time.Millisecond), projected(a), dup)
	// Each handover drains: the member giving a partition up finishes the
	// events it handed out and commits their offsets before the other one
	// starts, so nothing is delivered twice (the database would absorb it,
	// but it would mean a member stopped short of its drain).
	if dup != 0 {
		t.Errorf("%v events delivered again at a handover (projected as duplicates)", dup)
	}
}

// TestBatchStopMidBatchReprojectsNothingAndLosesNothing: a worker stopped
// while batches are in flight finishes them and commits exactly the offsets
// of what it projected; the next worker on the same group and database
// resumes there: no event is delivered twice, none is lost, order holds.
func TestBatchStopMidBatchReprojectsNothingAndLosesNothing(t *testing.T) {
	const partitions, perRoom = 3, 1000
	env := newBatchEnv(t, partitions)
	rooms := batchRooms(8)
	valid := map[string]string{}
	records := interleave(rooms, perRoom, valid)
	if err := env.produce(records); err != nil {
		t.Fatal(err)
	}
	total := len(records)

	applied := 0
	for i, stopAt := range []float64{0.2, 0.5, 0.8, 1} {
		n := env.start(fmt.Sprintf("worker-%d", i+1))
		before := env.countEvents()
		if stopAt == 1 {
			env.waitProjected(total, 0, 60*time.Second)
			env.waitCommitted(15 * time.Second)
		} else {
			env.waitProjected(int(stopAt*float64(total)), 0, 60*time.Second)
			// Stop while a batch transaction is open.
			batchWaitFor(t, 10*time.Second, "a batch transaction in flight", func() bool { return env.inTransaction(n.name) > 0 },
				func() string { return "none" })
			if held := n.metric(t, "roomcast_kafka_in_flight"); held == 0 {
				t.Fatalf("worker %d: no message in flight when stopped: the test stops nothing mid-batch", i+1)
			}
		}
		n.stop(t)
		after := env.countEvents()
		if stopAt < 1 && after >= total {
			t.Fatalf("worker %d projected everything before it stopped: the test stops nothing mid-stream", i+1)
		}
		// What was committed is exactly what was projected: nothing projected
		// is delivered again, nothing delivered and not projected is skipped.
		committed, hwm, err := env.offsets()
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		for p, off := range committed {
			if off > 0 {
				sum += off
			}
			if off > hwm[p] {
				t.Errorf("worker %d: partition %d committed at %d, beyond its high-water mark %d", i+1, p, off, hwm[p])
			}
		}
		if sum != int64(after) {
			t.Errorf("worker %d stopped with %d events projected and offsets %v committed (%d messages): a restart would %s",
				i+1, after, committed, sum, map[bool]string{true: "project events again", false: "skip events"}[sum < int64(after)])
		}
		dup := n.metric(t, "roomcast_events_projected_total", "outcome", "duplicate")
		got := n.metric(t, "roomcast_events_projected_total", "outcome", "applied")
		consumed := n.metric(t, "roomcast_events_consumed_total")
		t.Logf("worker %d: %d -> %d of %d events; consumed %v, applied %v, duplicates %v", i+1, before, after, total, consumed, got, dup)
		if dup != 0 || int(got) != after-before {
			t.Errorf("worker %d: %v events delivered again after a stop (duplicates), applied %v for %d new rows", i+1, dup, got, after-before)
		}
		applied += int(got)
	}
	if applied != total {
		t.Errorf("%d events applied over the restarts, want %d", applied, total)
	}
	env.checkRooms(validOrder(env.kafkaOrder(), valid), rooms)
	env.dlqEmpty()
}

// TestBatchFailedTransactionsKeepRoomOrder: batch transactions fail midway
// (their connections are killed) while many events of each room are in
// flight. A failed batch commits nothing and its events are retried; the
// later events of their rooms, waiting for them, neither overtake them nor
// go in a transaction next to one that may still fail. The outcome is that
// of a run without failures.
func TestBatchFailedTransactionsKeepRoomOrder(t *testing.T) {
	const partitions, perRoom, kills = 2, 800, 8
	env := newBatchEnv(t, partitions)
	env.logLevel = slog.LevelError + 4 // every event of a failed batch logs its retry as an error
	rooms := batchRooms(4)
	valid := map[string]string{}
	records := interleave(rooms, perRoom, valid)
	if err := env.produce(records); err != nil {
		t.Fatal(err)
	}
	total := len(records)

	node := env.start("worker")
	// Kill the worker's connections that are in a transaction, a batch at
	// a time, while the backlog is projected.
	killed := 0
	batchWaitFor(t, 60*time.Second, "batches to kill", func() bool {
		if env.countEvents() >= total*3/4 {
			return true
		}
		var n int64
		if err := env.db.Raw(`SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = ? AND xact_start IS NOT NULL`,
			node.name).Scan(&n).Error; err != nil {
			t.Fatal(err)
		}
		killed += int(n)
		return killed >= kills
	}, func() string { return fmt.Sprintf("%d connections killed", killed) })
	env.waitProjected(total, 0, 60*time.Second)
	env.waitCommitted(15 * time.Second)

	failed := node.metric(t, "roomcast_projection_failures_total")
	t.Logf("%d connections killed in transactions; %v events in failed batches, retried", killed, failed)
	if failed == 0 {
		t.Fatal("no batch failed: the test proves nothing")
	}
	env.checkRooms(validOrder(env.kafkaOrder(), valid), rooms)
	env.dlqEmpty()
}
