package consumers_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/roomcast/roomcast/consumers"
	"github.com/roomcast/roomcast/internal/testsupport"
)

// keyedTopic starts a broker with one topic of the given partitions.
func keyedTopic(t testing.TB, partitions int32) (brokers []string, topic string) {
	t.Helper()
	k := testsupport.Kafka(t, map[string]int32{"keyed.events": partitions})
	return k.Brokers, k.Topics["keyed.events"]
}

// keyedEvent is what the tests produce: value "<key>/<seq>", seq counting
// the events of the key from 0.
type keyedEvent struct {
	key     string
	seq     int
	headers map[string]string
}

// keyedEvents returns total events spread round-robin over keys keys.
func keyedEvents(keys, total int) []keyedEvent {
	events := make([]keyedEvent, total)
	for i := range events {
		events[i] = keyedEvent{key: "room-" + strconv.Itoa(i%keys), seq: i / keys}
	}
	return events
}

// produceKeyed produces events in order (one request in flight, so a key's
// events keep their order in its partition).
func produceKeyed(t *testing.T, brokers []string, topic string, events []keyedEvent) {
	t.Helper()
	if err := produceKeyedErr(brokers, topic, events); err != nil {
		t.Fatal(err)
	}
}

func produceKeyedErr(brokers []string, topic string, events []keyedEvent) error {
	cfg := consumers.KafkaConfig{Brokers: brokers}.ProducerConfig()
	cfg.Net.MaxOpenRequests = 1
	producer, err := sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		return err
	}
	defer producer.Close()
	for chunk := range slices.Chunk(events, 500) {
		batch := make([]*sarama.ProducerMessage, len(chunk))
		for i, e := range chunk {
			pm := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(e.key), Value: sarama.StringEncoder(e.key + "/" + strconv.Itoa(e.seq))}
			for k, v := range e.headers {
				pm.Headers = append(pm.Headers, sarama.RecordHeader{Key: []byte(k), Value: []byte(v)})
			}
			batch[i] = pm
		}
		if err := producer.SendMessages(batch); err != nil {
			return fmt.Errorf("produce to %s: %w", topic, err)
		}
	}
	return nil
}

// keyedSaramaConfig is roomcast's consumer configuration, noticing
// rebalances quickly (the default heartbeat is 3s).
func keyedSaramaConfig() *sarama.Config {
	sc := consumers.KafkaConfig{ClientID: "roomcast-test"}.ConsumerConfig()
	sc.Consumer.Group.Heartbeat.Interval = 100 * time.Millisecond
	return sc
}

func newKeyedSubscriber(t *testing.T, brokers []string, group string, tweak func(*consumers.KeyedSubscriberConfig)) *consumers.KeyedSubscriber {
	t.Helper()
	cfg := consumers.KeyedSubscriberConfig{
		Brokers: brokers, ConsumerGroup: group, Sarama: keyedSaramaConfig(), DrainTimeout: 5 * time.Second,
		SettledByMiddleware: keyedSettledByMiddleware,
		Logger:              slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	s, err := consumers.NewKeyedSubscriber(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// keyedSettledByMiddleware runs the tests with SettledByMiddleware: their
// handlers then settle each message through consumers.SettleKeyed, as the
// router's outermost middleware would, before acking or nacking it
// (TestKeyedSubscriberSettledByMiddleware).
var keyedSettledByMiddleware bool

var errKeyedNack = errors.New("nacked by the test")

// keyedAck acks msg, as the router does after its handler returned nil.
func keyedAck(msg *message.Message) {
	if keyedSettledByMiddleware {
		_, _ = consumers.SettleKeyed(func(*message.Message) ([]*message.Message, error) { return nil, nil })(msg)
	}
	msg.Ack()
}

// keyedNack nacks msg, as the router does after its handler returned an error.
func keyedNack(msg *message.Message) {
	if keyedSettledByMiddleware {
		_, _ = consumers.SettleKeyed(func(*message.Message) ([]*message.Message, error) { return nil, errKeyedNack })(msg)
	}
	msg.Nack()
}

// keyedNext returns the next message from msgs, failing the test after 20 s.
func keyedNext(t *testing.T, msgs <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case msg := <-msgs:
		return msg
	case <-time.After(20 * time.Second):
		t.Fatal("no message")
		return nil
	}
}

// keyedParse reads key and seq back from a message.
func keyedParse(t *testing.T, msg *message.Message) (key string, seq int) {
	t.Helper()
	key, s, ok := strings.Cut(string(msg.Payload), "/")
	n, err := strconv.Atoi(s)
	if !ok || err != nil {
		t.Errorf("payload %q is not key/seq", msg.Payload)
	}
	if k, ok := consumers.MessageKey(msg.Context()); !ok || string(k) != key {
		t.Errorf("consumers.MessageKey = %q, %v; want %q", k, ok, key)
	}
	return key, n
}

// keyedRecorder records what handlers process, and checks that no two
// events of one key are processed at once.
type keyedRecorder struct {
	t  *testing.T
	mu sync.Mutex
	// byKey: per key, the seqs in the order processing began.
	byKey      map[string][]int
	offsets    map[string][]int64 // per key, the offsets in the same order
	partitions map[string]int32
	active     map[string]bool
	seen       map[string]bool // key/seq processed at least once
	done       int             // processings finished
	current    int
	max        int
}

func newKeyedRecorder(t *testing.T) *keyedRecorder {
	return &keyedRecorder{t: t, byKey: map[string][]int{}, offsets: map[string][]int64{}, partitions: map[string]int32{},
		active: map[string]bool{}, seen: map[string]bool{}}
}

// process records msg's processing, taking work (and sleeping in it).
func (r *keyedRecorder) process(msg *message.Message, work time.Duration) {
	key, seq := keyedParse(r.t, msg)
	partition, ok1 := consumers.MessagePartition(msg.Context())
	offset, ok2 := consumers.MessageOffset(msg.Context())
	ts, ok3 := consumers.MessageTimestamp(msg.Context())
	if !ok1 || !ok2 || !ok3 || ts.IsZero() {
		r.t.Errorf("%s/%d: partition, offset or timestamp missing from the context", key, seq)
	}
	r.mu.Lock()
	if r.active[key] {
		r.t.Errorf("%s/%d handed out while an earlier event of %s is still unacked", key, seq, key)
	}
	if p, ok := r.partitions[key]; ok && p != partition {
		r.t.Errorf("%s seen on partitions %d and %d", key, p, partition)
	}
	r.partitions[key] = partition
	r.active[key] = true
	r.byKey[key] = append(r.byKey[key], seq)
	r.offsets[key] = append(r.offsets[key], offset)
	r.current++
	r.max = max(r.max, r.current)
	r.mu.Unlock()

	time.Sleep(work)

	r.mu.Lock()
	r.active[key] = false
	r.current--
	r.seen[key+"/"+strconv.Itoa(seq)] = true
	r.done++
	r.mu.Unlock()
}

func (r *keyedRecorder) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

func (r *keyedRecorder) maxConcurrent() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.max
}

// checkOrder checks that every key's events were processed in order, from 0,
// each exactly once when exactlyOnce, and else never going back.
func (r *keyedRecorder) checkOrder(t *testing.T, name string, exactlyOnce bool) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for key, seqs := range r.byKey {
		if exactlyOnce && !slices.Equal(seqs, keyedSeqs(len(seqs))) {
			t.Errorf("%s: %s processed in order %v, want 0..%d", name, key, seqs, len(seqs)-1)
		}
		if !slices.IsSorted(seqs) || !slices.IsSorted(r.offsets[key]) {
			t.Errorf("%s: %s processed out of partition order: seqs %v offsets %v", name, key, seqs, r.offsets[key])
		}
	}
}

func keyedSeqs(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// keyedWaitFor polls cond until it holds or timeout passes.
func keyedWaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// keyedConsumeConcurrently handles every message in its own goroutine, as the
// Router does, and acks it after process.
func keyedConsumeConcurrently(msgs <-chan *message.Message, rec *keyedRecorder, work func() time.Duration) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Go(func() {
		for msg := range msgs {
			wg.Go(func() {
				rec.process(msg, work())
				keyedAck(msg)
			})
		}
	})
	return &wg
}

func keyedRandomWork(upTo time.Duration) func() time.Duration {
	return func() time.Duration { return rand.N(upTo) }
}

func TestKeyedSubscriberKeepsPerKeyOrderUnderConcurrency(t *testing.T) {
	const partitions, keys, total = 3, 200, 5000
	brokers, topic := keyedTopic(t, partitions)
	produceKeyed(t, brokers, topic, keyedEvents(keys, total))

	sub := newKeyedSubscriber(t, brokers, "order", nil)
	ctx, cancel := context.WithCancel(t.Context())
	msgs, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	rec := newKeyedRecorder(t)
	began := time.Now()
	wg := keyedConsumeConcurrently(msgs, rec, keyedRandomWork(2*time.Millisecond))
	keyedWaitFor(t, 30*time.Second, "all events", func() bool { return rec.distinct() == total })
	elapsed := time.Since(began)
	cancel()
	wg.Wait() // returns once the subscription's channel is closed

	rec.checkOrder(t, "consumer", true)
	if rec.done != total {
		t.Errorf("processed %d times, want each of the %d events once", rec.done, total)
	}
	t.Logf("%d events over %d keys and %d partitions in %v; up to %d processed at once", total, keys, partitions, elapsed.Round(time.Millisecond), rec.maxConcurrent())
	if m := rec.maxConcurrent(); m <= 10*partitions {
		t.Errorf("at most %d events were processed at once: want far more than one per partition", m)
	}
}

func TestMessagePositionIsUnknownOutsideKeyedSubscriberMessages(t *testing.T) {
	ctx := t.Context()
	_, okP := consumers.MessagePartition(ctx)
	_, okO := consumers.MessageOffset(ctx)
	_, okT := consumers.MessageTimestamp(ctx)
	_, okK := consumers.MessageKey(ctx)
	if okP || okO || okT || okK {
		t.Errorf("a context KeyedSubscriber did not hand out reports a position: partition %v offset %v timestamp %v key %v", okP, okO, okT, okK)
	}
}

func TestKeyedSubscriberMessageFromKafka(t *testing.T) {
	brokers, topic := keyedTopic(t, 1)
	produceKeyed(t, brokers, topic, []keyedEvent{
		{key: "room-1", seq: 0, headers: map[string]string{kafka.UUIDHeaderKey: "uuid-1", "trace": "abc"}},
		{key: "", seq: 1},
	})
	sub := newKeyedSubscriber(t, brokers, "message", nil)
	msgs, err := sub.Subscribe(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		uuid, payload string
		metadata      message.Metadata
		key           []byte
	}{
		{uuid: "uuid-1", payload: "room-1/0", metadata: message.Metadata{"trace": "abc"}, key: []byte("room-1")},
		{uuid: "", payload: "/1", metadata: message.Metadata{}, key: nil},
	} {
		var msg *message.Message
		select {
		case msg = <-msgs:
		case <-time.After(20 * time.Second):
			t.Fatal("no message")
		}
		if msg.UUID != want.uuid || string(msg.Payload) != want.payload || !keyedSameMetadata(msg.Metadata, want.metadata) {
			t.Errorf("message %d: uuid %q payload %q metadata %v; want %q %q %v", i, msg.UUID, msg.Payload, msg.Metadata, want.uuid, want.payload, want.metadata)
		}
		p, _ := consumers.MessagePartition(msg.Context())
		o, _ := consumers.MessageOffset(msg.Context())
		ts, _ := consumers.MessageTimestamp(msg.Context())
		key, ok := consumers.MessageKey(msg.Context())
		if p != 0 || o != int64(i) || time.Since(ts) > time.Minute || !ok || string(key) != string(want.key) {
			t.Errorf("message %d: context partition %d offset %d timestamp %v key %q (%v)", i, p, o, ts, key, ok)
		}
		keyedAck(msg)
		if msg.Context().Err() == nil {
			// The context ends once the message is acked, as watermill-kafka's does.
			keyedWaitFor(t, time.Second, "the acked message's context to end", func() bool { return msg.Context().Err() != nil })
		}
	}
}

// Prepare runs once per message read, and its result travels in the context
// of the message and of its redelivery after a nack; without Prepare,
// Prepared is nil.
func TestKeyedSubscriberPrepare(t *testing.T) {
	brokers, topic := keyedTopic(t, 1)
	produceKeyed(t, brokers, topic, []keyedEvent{{key: "room-1", seq: 0}, {key: "room-1", seq: 1}})
	var calls atomic.Int32
	sub := newKeyedSubscriber(t, brokers, "prepare", func(c *consumers.KeyedSubscriberConfig) {
		c.NackResendSleep = -1
		c.Prepare = func(payload []byte) any {
			calls.Add(1)
			return "prepared " + string(payload)
		}
	})
	msgs, err := sub.Subscribe(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	next := func() *message.Message { t.Helper(); return keyedNext(t, msgs) }
	first := next()
	if got := consumers.Prepared(first.Context()); got != "prepared room-1/0" {
		t.Errorf("Prepared = %v, want %q", got, "prepared room-1/0")
	}
	keyedNack(first)
	again := next()
	if string(again.Payload) != "room-1/0" || consumers.Prepared(again.Context()) != "prepared room-1/0" {
		t.Errorf("redelivery: payload %q, Prepared %v; want the first message prepared", again.Payload, consumers.Prepared(again.Context()))
	}
	keyedAck(again)
	second := next()
	if got := consumers.Prepared(second.Context()); got != "prepared room-1/1" {
		t.Errorf("Prepared = %v, want %q", got, "prepared room-1/1")
	}
	keyedAck(second)
	if n := calls.Load(); n != 2 {
		t.Errorf("Prepare called %d times for 2 messages (one redelivered), want 2", n)
	}
	if got := consumers.Prepared(t.Context()); got != nil {
		t.Errorf("Prepared of a context not from the subscriber = %v, want nil", got)
	}
}

// A Prepare that panics leaves the message unprepared (its handler does the
// work, under the router's recoverer) and consumption goes on.
func TestKeyedSubscriberPrepareThatPanics(t *testing.T) {
	brokers, topic := keyedTopic(t, 1)
	produceKeyed(t, brokers, topic, []keyedEvent{{key: "room-1", seq: 0}, {key: "room-1", seq: 1}})
	sub := newKeyedSubscriber(t, brokers, "prepare-panics", func(c *consumers.KeyedSubscriberConfig) {
		c.Prepare = func(payload []byte) any {
			if string(payload) == "room-1/0" {
				panic("bad payload")
			}
			return "prepared"
		}
	})
	msgs, err := sub.Subscribe(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []any{nil, "prepared"} {
		select {
		case msg := <-msgs:
			if got := consumers.Prepared(msg.Context()); got != want {
				t.Errorf("message %d: Prepared = %v, want %v", i, got, want)
			}
			keyedAck(msg)
		case <-time.After(20 * time.Second):
			t.Fatalf("message %d not handed out", i)
		}
	}
}

func keyedSameMetadata(a, b message.Metadata) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// An ack out of order is marked only once every earlier offset is acked, so a
// new member resumes at the oldest unacked message, never after it.
func TestKeyedSubscriberCommitsOnlyTheAckedPrefix(t *testing.T) {
	const total, held = 100, 10
	brokers, topic := keyedTopic(t, 1)
	produceKeyed(t, brokers, topic, keyedEvents(total, total)) // every event its own key: all go out at once

	sub := newKeyedSubscriber(t, brokers, "prefix", func(c *consumers.KeyedSubscriberConfig) { c.DrainTimeout = 300 * time.Millisecond })
	msgs, err := sub.Subscribe(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var got []*message.Message
	for len(got) < total {
		select {
		case msg := <-msgs:
			got = append(got, msg)
		case <-time.After(20 * time.Second):
			t.Fatalf("only %d of %d messages handed out without acks", len(got), total)
		}
	}
	rand.Shuffle(len(got), func(i, j int) { got[i], got[j] = got[j], got[i] })
	var heldMsg *message.Message
	for _, msg := range got {
		if off, _ := consumers.MessageOffset(msg.Context()); off == held {
			heldMsg = msg
			continue
		}
		keyedAck(msg)
		time.Sleep(time.Millisecond)
	}
	keyedWaitFor(t, 5*time.Second, "the acks to be recorded", func() bool {
		st := sub.Stats()
		return len(st) == 1 && st[0].Processing == 1
	})
	time.Sleep(1200 * time.Millisecond) // an auto-commit interval passes while the message is held
	st := sub.Stats()[0]
	if st.Marked != held || st.InFlight != total-held || st.HighWaterMark != total {
		t.Fatalf("with offset %d unacked and the rest acked: stats %+v, want marked %d, %d in flight, high water mark %d", held, st, held, total-held, total)
	}
	if err := sub.Close(); err != nil { // the held message is never acked: the drain times out
		t.Fatal(err)
	}
	if heldMsg.Context().Err() == nil {
		t.Error("the context of a message still out when its partition was released was not cancelled")
	}
	keyedAck(heldMsg) // too late: ignored

	again := newKeyedSubscriber(t, brokers, "prefix", nil)
	msgs, err = again.Subscribe(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var offsets []int64
	for len(offsets) < total-held {
		select {
		case msg := <-msgs:
			off, _ := consumers.MessageOffset(msg.Context())
			offsets = append(offsets, off)
			keyedAck(msg)
		case <-time.After(20 * time.Second):
			t.Fatalf("after the restart got offsets %v", offsets)
		}
	}
	slices.Sort(offsets)
	if offsets[0] > held {
		t.Fatalf("the new member resumed at offset %d, after the unacked %d: a message was skipped", offsets[0], held)
	}
	if offsets[0] != held || offsets[len(offsets)-1] != total-1 {
		t.Errorf("the new member got offsets %d..%d, want %d..%d (acked messages before the held one delivered again)", offsets[0], offsets[len(offsets)-1], held, total-1)
	}
	select {
	case msg := <-msgs:
		t.Errorf("more redelivered than the %d messages from the held one on: %s", total-held, msg.Payload)
	case <-time.After(300 * time.Millisecond):
	}
}

// A nacked message comes back after NackResendSleep, still before the later
// events of its key, while the other keys go on.
func TestKeyedSubscriberNackRedeliversInOrderWithoutBlockingOtherKeys(t *testing.T) {
	brokers, topic := keyedTopic(t, 1)
	var events []keyedEvent
	for i := range 5 {
		events = append(events, keyedEvent{key: "a", seq: i}, keyedEvent{key: "b", seq: i})
	}
	produceKeyed(t, brokers, topic, events)
	const sleep = 150 * time.Millisecond
	sub := newKeyedSubscriber(t, brokers, "nack", func(c *consumers.KeyedSubscriberConfig) { c.NackResendSleep = sleep })
	msgs, err := sub.Subscribe(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var log []string // "a/1 nack", "b/3 ack", ... in the order they happened
	var nacks int
	var lastB, aOneAcked, firstNack time.Time
	var wg sync.WaitGroup
	acked := 0
	for acked < len(events) {
		var msg *message.Message
		select {
		case msg = <-msgs:
		case <-time.After(20 * time.Second):
			t.Fatalf("stuck after %v", log)
		}
		key, seq := keyedParse(t, msg)
		ev := key + "/" + strconv.Itoa(seq)
		mu.Lock()
		nack := ev == "a/1" && nacks < 2
		if nack {
			nacks++
		} else {
			acked++
		}
		mu.Unlock()
		wg.Go(func() {
			time.Sleep(time.Millisecond)
			mu.Lock()
			defer mu.Unlock()
			if nack {
				log = append(log, ev+" nack")
				if firstNack.IsZero() {
					firstNack = time.Now()
				}
				keyedNack(msg)
				return
			}
			log = append(log, ev+" ack")
			switch {
			case key == "b":
				lastB = time.Now()
			case ev == "a/1":
				aOneAcked = time.Now()
			}
			keyedAck(msg)
		})
	}
	wg.Wait()

	var aOrder []string
	for _, e := range log {
		if strings.HasPrefix(e, "a/") {
			aOrder = append(aOrder, e)
		}
	}
	want := []string{"a/0 ack", "a/1 nack", "a/1 nack", "a/1 ack", "a/2 ack", "a/3 ack", "a/4 ack"}
	if !slices.Equal(aOrder, want) {
		t.Errorf("key a went %v, want %v", aOrder, want)
	}
	if !lastB.Before(aOneAcked) {
		t.Errorf("key b finished at %v, after a/1 was finally acked at %v: a nack held back another key", lastB, aOneAcked)
	}
	if d := aOneAcked.Sub(firstNack); d < 2*sleep {
		t.Errorf("a/1 acked %v after its first nack, want at least 2 x NackResendSleep", d)
	}
	if d := aOneAcked.Sub(firstNack); d > 2*sleep+2*time.Second {
		t.Errorf("a/1 acked %v after its first nack: redelivery too slow", d)
	}
	keyedWaitFor(t, 5*time.Second, "all offsets marked", func() bool { st := sub.Stats(); return len(st) == 1 && st[0].Marked == int64(len(events)) })
}

// Messages nobody acks pile up only to the caps.
func TestKeyedSubscriberBoundsInFlight(t *testing.T) {
	const partitions = 2
	brokers, topic := keyedTopic(t, partitions)
	produceKeyed(t, brokers, topic, keyedEvents(400, 400)) // distinct keys: only the caps hold messages back
	for _, tc := range []struct {
		name                  string
		perPartition, overall int
		wantPer, wantTotal    int
	}{
		{name: "per partition", perPartition: 5, overall: 100, wantPer: 5, wantTotal: 10},
		{name: "overall", perPartition: 5, overall: 7, wantPer: 5, wantTotal: 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub := newKeyedSubscriber(t, brokers, "bounded-"+strings.ReplaceAll(tc.name, " ", "-"), func(c *consumers.KeyedSubscriberConfig) {
				c.MaxInFlightPerPartition, c.MaxInFlight, c.DrainTimeout = tc.perPartition, tc.overall, 200*time.Millisecond
			})
			msgs, err := sub.Subscribe(t.Context(), topic)
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			per := map[int32]int{}
			total := 0
			var wg sync.WaitGroup
			wg.Go(func() {
				for msg := range msgs { // never acked
					p, _ := consumers.MessagePartition(msg.Context())
					mu.Lock()
					per[p]++
					total++
					mu.Unlock()
				}
			})
			count := func() int { mu.Lock(); defer mu.Unlock(); return total }
			keyedWaitFor(t, 20*time.Second, "messages to be handed out", func() bool { return count() >= tc.wantTotal })
			time.Sleep(time.Second) // give it time to hand out more than it may
			mu.Lock()
			if total != tc.wantTotal {
				t.Errorf("%d messages handed out without acks, want %d (%v)", total, tc.wantTotal, per)
			}
			for p, n := range per {
				if n > tc.wantPer {
					t.Errorf("partition %d: %d handed out, want at most %d", p, n, tc.wantPer)
				}
			}
			mu.Unlock()
			for _, st := range sub.Stats() {
				if st.InFlight > tc.perPartition || st.Processing > tc.perPartition {
					t.Errorf("stats %+v beyond the cap %d", st, tc.perPartition)
				}
			}
			began := time.Now()
			if err := sub.Close(); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			if d := time.Since(began); d > 5*time.Second {
				t.Errorf("Close took %v with unacked messages and a drain timeout of 200ms", d)
			}
		})
	}
}

// A second member joins mid-stream and leaves again: every event is
// processed, and each member processes each key's events in order; with an
// eager strategy (Sarama's default, range) and a cooperative one.
func TestKeyedSubscriberRebalance(t *testing.T) {
	for _, tc := range []struct {
		name     string
		strategy sarama.BalanceStrategy
	}{
		{"eager", sarama.NewBalanceStrategyRange()},
		{"cooperative", sarama.NewBalanceStrategyCooperativeSticky()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testKeyedRebalance(t, func(c *consumers.KeyedSubscriberConfig) {
				c.Sarama.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{tc.strategy}
			})
		})
	}
}

func testKeyedRebalance(t *testing.T, tweak func(*consumers.KeyedSubscriberConfig)) {
	const partitions, keys, chunk = 4, 100, 100
	brokers, topic := keyedTopic(t, partitions)
	// Produce a chunk every 50ms until the second member has come and gone.
	var events []keyedEvent // written by the producer until produced is closed
	stop, produced := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(produced)
		after := -1 // chunks still to produce once stopped
		for n := 0; after != 0; n++ {
			next := keyedEvents(keys, (n+1)*chunk)[n*chunk:]
			if err := produceKeyedErr(brokers, topic, next); err != nil {
				t.Error(err)
				return
			}
			events = append(events, next...)
			select {
			case <-stop:
				if after < 0 {
					after = 5
				}
				after--
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()

	recA, recB := newKeyedRecorder(t), newKeyedRecorder(t)
	subA := newKeyedSubscriber(t, brokers, "rebalance", tweak)
	msgsA, err := subA.Subscribe(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	wgA := keyedConsumeConcurrently(msgsA, recA, keyedRandomWork(3*time.Millisecond))
	keyedWaitFor(t, 20*time.Second, "the first member to start", func() bool { return recA.distinct() > 300 })

	subB := newKeyedSubscriber(t, brokers, "rebalance", tweak)
	ctxB, cancelB := context.WithCancel(t.Context())
	msgsB, err := subB.Subscribe(ctxB, topic)
	if err != nil {
		t.Fatal(err)
	}
	wgB := keyedConsumeConcurrently(msgsB, recB, keyedRandomWork(3*time.Millisecond))
	keyedWaitFor(t, 20*time.Second, "the second member to get partitions", func() bool { return recB.distinct() > 200 })
	cancelB() // B leaves: its channel closes once it drained
	wgB.Wait()
	close(stop)
	<-produced
	total := len(events)

	seen := func() int {
		recA.mu.Lock()
		defer recA.mu.Unlock()
		recB.mu.Lock()
		defer recB.mu.Unlock()
		n := 0
		for _, e := range events {
			id := e.key + "/" + strconv.Itoa(e.seq)
			if recA.seen[id] || recB.seen[id] {
				n++
			}
		}
		return n
	}
	keyedWaitFor(t, 30*time.Second, "every event processed", func() bool { return seen() == total })
	_ = subA.Close()
	wgA.Wait()

	recA.checkOrder(t, "first member", false)
	recB.checkOrder(t, "second member", false)
	dup := recA.done + recB.done - total
	t.Logf("processed %d events: %d by the member that stayed, %d by the one that came and went, %d twice", total, recA.done, recB.done, dup)
	if dup > 2*keys {
		t.Errorf("%d events processed twice: more than the in-flight messages at two rebalances", dup)
	}
}

// Through the Watermill Router, a 1ms handler goes far beyond the 1000
// events/s per partition of a subscriber that waits for each ack.
func TestKeyedSubscriberThroughRouter(t *testing.T) {
	const partitions, keys, total = 3, 300, 6000
	const work = time.Millisecond
	brokers, topic := keyedTopic(t, partitions)
	produceKeyed(t, brokers, topic, keyedEvents(keys, total))

	sub := newKeyedSubscriber(t, brokers, "router", nil)
	logger := watermill.NewSlogLogger(slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, logger)
	if err != nil {
		t.Fatal(err)
	}
	rec := newKeyedRecorder(t)
	var first atomic.Pointer[time.Time]
	if keyedSettledByMiddleware {
		router.AddMiddleware(consumers.SettleKeyed)
	}
	router.AddConsumerHandler("keyed", topic, sub, func(msg *message.Message) error {
		now := time.Now()
		first.CompareAndSwap(nil, &now)
		rec.process(msg, work)
		return nil
	})
	done := make(chan error, 1)
	go func() { done <- router.Run(t.Context()) }()
	keyedWaitFor(t, 30*time.Second, "all events", func() bool { return rec.distinct() == total })
	elapsed := time.Since(*first.Load())
	if err := router.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	rec.checkOrder(t, "router", true)
	rate := float64(total) / elapsed.Seconds()
	t.Logf("router, %v handler: %d events over %d partitions in %v = %.0f events/s (%.0f per partition; one at a time per partition would be under %.0f); up to %d at once",
		work, total, partitions, elapsed.Round(time.Millisecond), rate, rate/partitions, float64(time.Second/work), rec.maxConcurrent())
	// One message per partition at a time cannot beat 1/work per partition;
	// by how much this does depends on the machine (2-20x here under -race).
	if perPartition := rate / partitions; perPartition <= float64(time.Second/work) {
		t.Errorf("%.0f events/s per partition with a %v handler: not above the %.0f of one at a time", perPartition, work, float64(time.Second/work))
	}
	for _, st := range sub.Stats() {
		t.Errorf("partition still claimed after Close: %+v", st)
	}

	// For comparison: watermill-kafka's subscriber, one message per partition at a time.
	const baseline = 1500
	sc := kafka.DefaultSaramaSubscriberConfig()
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	wk, err := kafka.NewSubscriber(kafka.SubscriberConfig{Brokers: brokers, ConsumerGroup: "router-baseline", OverwriteSaramaConfig: sc}, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	msgs, err := wk.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var n atomic.Int64
	first.Store(nil)
	for range partitions { // as the Router would: it hands out one message per partition anyway
		wg.Go(func() {
			for msg := range msgs {
				now := time.Now()
				first.CompareAndSwap(nil, &now)
				time.Sleep(work)
				msg.Ack()
				if n.Add(1) == baseline {
					cancel()
				}
			}
		})
	}
	wg.Wait()
	_ = wk.Close()
	base := float64(baseline) / time.Since(*first.Load()).Seconds()
	t.Logf("watermill-kafka subscriber, same handler: %.0f events/s (%.0f per partition): the keyed subscriber is %.0fx faster", base, base/partitions, rate/base)
}

func TestKeyedSubscriberConfigValidate(t *testing.T) {
	if err := (consumers.KeyedSubscriberConfig{Brokers: []string{"localhost:9092"}, ConsumerGroup: "g"}).Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	sc := sarama.NewConfig()
	sc.Consumer.Group.Rebalance.Timeout = 5 * time.Second
	err := consumers.KeyedSubscriberConfig{InitialOffset: 3, MaxInFlight: -1, MaxInFlightPerPartition: -1, DrainTimeout: 6 * time.Second, Sarama: sc}.Validate()
	for _, want := range []string{"no brokers", "no consumer group", "initial offset 3", "MaxInFlight -1", "MaxInFlightPerPartition -1", "below Consumer.Group.Rebalance.Timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
	if _, err := consumers.NewKeyedSubscriber(consumers.KeyedSubscriberConfig{Brokers: []string{"localhost:9092"}, ConsumerGroup: "g", Sarama: sc}); err == nil {
		t.Error("NewKeyedSubscriber accepted the default drain timeout of 10s with a rebalance timeout of 5s")
	}
	// Sarama's own defaults: a JoinGroup may be held longer than it reads.
	err = consumers.KeyedSubscriberConfig{Brokers: []string{"localhost:9092"}, ConsumerGroup: "g", Sarama: sarama.NewConfig(),
		MaxInFlight: 20, MaxInFlightPerPartition: 20, MaxInFlightBytes: -1, GroupInstanceID: "pod/0"}.Validate()
	for _, want := range []string{"Rebalance.Timeout 1m0s must be below Net.ReadTimeout 30s", "MaxInFlightPerPartition 20 must be below MaxInFlight 20",
		"MaxInFlightBytes -1", "pod/0"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
	if err := (consumers.KeyedSubscriberConfig{Brokers: []string{"localhost:9092"}, ConsumerGroup: "g", MaxInFlight: 20, GroupInstanceID: "roomcast-0"}).Validate(); err != nil {
		t.Errorf("MaxInFlight 20 with the default per partition, and an instance id: %v", err)
	}
	sub, err := consumers.NewKeyedSubscriber(consumers.KeyedSubscriberConfig{Brokers: []string{"localhost:9092"}, ConsumerGroup: "g"})
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(sub.Close(), sub.Close()); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Subscribe(t.Context(), "t"); err == nil {
		t.Error("Subscribe after Close did not fail")
	}
}

// A message nacked while its partition drains (or nacked just before, its
// resend still waiting) is not handed out again there. The later messages of
// its key, which wait for it (Batcher), are given up at once (their contexts
// end) instead of holding the drain until DrainTimeout, and the partition's
// next owner gets them all again, in order.
func TestKeyedSubscriberDrainGivesUpSuccessorsOfANackedMessage(t *testing.T) {
	brokers, topic := keyedTopic(t, 1)
	produceKeyed(t, brokers, topic, []keyedEvent{{key: "a", seq: 0}, {key: "a", seq: 1}, {key: "b", seq: 0}})
	const group = "drain-nack"
	sub := newKeyedSubscriber(t, brokers, group, func(c *consumers.KeyedSubscriberConfig) {
		c.NackResendSleep, c.DrainTimeout, c.MaxInFlightPerKey = time.Minute, 40*time.Second, 10
		c.Sarama.Consumer.Group.Rebalance.Timeout, c.Sarama.Net.ReadTimeout = 50*time.Second, 60*time.Second
	})
	msgs, err := sub.Subscribe(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*message.Message{}
	for len(got) < 3 {
		select {
		case msg := <-msgs:
			key, seq := keyedParse(t, msg)
			got[fmt.Sprintf("%s/%d", key, seq)] = msg
		case <-time.After(20 * time.Second):
			t.Fatalf("only %v handed out", slices.Sorted(maps.Keys(got)))
		}
	}
	keyedAck(got["b/0"])
	keyedNack(got["a/0"]) // resent only after a minute, so not before the drain
	closed := make(chan error, 1)
	go func() { closed <- sub.Close() }()
	// Well within the 40 s of DrainTimeout.
	keyedWaitFor(t, 10*time.Second, "a/1, waiting for the nacked a/0, to be given up", func() bool { return got["a/1"].Context().Err() != nil })
	keyedNack(got["a/1"]) // what its handler does when its context ends
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not return once every message out was settled")
	}

	// Nothing of key a was acked: the next owner starts at a/0.
	next := newKeyedSubscriber(t, brokers, group, nil)
	msgs, err = next.Subscribe(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case msg := <-msgs:
		if key, seq := keyedParse(t, msg); key != "a" || seq != 0 {
			t.Fatalf("the next owner starts at %s/%d, want a/0", key, seq)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the next owner got nothing")
	}
}

// With SettledByMiddleware, the outcome of each message comes from
// SettleKeyed instead of a goroutine per message watching its Ack and Nack:
// the same tests hold, run that way.
func TestKeyedSubscriberSettledByMiddleware(t *testing.T) {
	keyedSettledByMiddleware = true
	defer func() { keyedSettledByMiddleware = false }()
	for _, tc := range []struct {
		name string
		test func(*testing.T)
	}{
		{"order", TestKeyedSubscriberKeepsPerKeyOrderUnderConcurrency},
		{"prepare", TestKeyedSubscriberPrepare},
		{"acked prefix", TestKeyedSubscriberCommitsOnlyTheAckedPrefix},
		{"nack", TestKeyedSubscriberNackRedeliversInOrderWithoutBlockingOtherKeys},
		{"bounds", TestKeyedSubscriberBoundsInFlight},
		{"rebalance", TestKeyedSubscriberRebalance},
		{"router", TestKeyedSubscriberThroughRouter},
		{"drain", TestKeyedSubscriberDrainGivesUpSuccessorsOfANackedMessage},
		{"panic", testKeyedSettleKeyedPanic},
	} {
		t.Run(tc.name, tc.test)
	}
}

// A handler that panics inside SettleKeyed (the router recovers and nacks)
// has its message handed out again, and the key's next one waits for it.
func testKeyedSettleKeyedPanic(t *testing.T) {
	brokers, topic := keyedTopic(t, 1)
	produceKeyed(t, brokers, topic, []keyedEvent{{key: "room-1", seq: 0}, {key: "room-1", seq: 1}})
	sub := newKeyedSubscriber(t, brokers, "settle-panic", func(c *consumers.KeyedSubscriberConfig) {
		c.NackResendSleep = -1
		c.MaxInFlightPerKey = 1
	})
	msgs, err := sub.Subscribe(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	next := func() *message.Message { t.Helper(); return keyedNext(t, msgs) }
	first := next()
	func() {
		defer func() {
			if recover() != nil {
				first.Nack() // as the router does
			}
		}()
		_, _ = consumers.SettleKeyed(func(*message.Message) ([]*message.Message, error) { panic("boom") })(first)
	}()
	again := next()
	if string(again.Payload) != "room-1/0" {
		t.Fatalf("after the panic got %q, want room-1/0 again", again.Payload)
	}
	keyedAck(again)
	if second := next(); string(second.Payload) != "room-1/1" {
		t.Fatalf("got %q, want room-1/1", second.Payload)
	} else {
		keyedAck(second)
	}
}
