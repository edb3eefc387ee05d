package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/fakepusher"
)

// The traffic of BenchmarkIngestHotRoom (issue "Nothing stalls", item 4).
const (
	hotBacklog     = 10000 // events of the hot room in the topic when roomcast starts
	hotColdRooms   = 100
	hotColdRate    = 100 // events/s over all the cold rooms
	hotColdSeconds = 15  // the hot room takes ~30 s to drain at ~10 events per round trip
)

// BenchmarkIngestHotRoom measures, end to end, whether one busy room holds
// up the others. `roomcast run` (default settings) starts with one event of
// each of 100 cold rooms, then 10,000 events of one hot room (one key, so
// one partition), in the 12-partition topic; from its first consumed event,
// the cold rooms produce a steady 100 events/s between them for 15 s while
// the hot room's deliveries drain, the Pusher fake answering each call after
// 30 ms.
//
// Reported, for the cold rooms' 1,500 events of the steady stream:
// produce -> Pusher (cold-p50-ms, cold-p99-ms, cold-max-ms: the fake's
// ReceivedAt minus the time just before the SyncProducer call, as
// BenchmarkIngestLatency) and commit -> Pusher (cold-commit-p50-ms,
// cold-commit-p99-ms, cold-commit-max-ms: ReceivedAt minus the commit time
// of the transaction that stored the event, pg_xact_commit_timestamp of its
// events row, Postgres running with track_commit_timestamp=on). ReceivedAt is
// when the call reaches the fake: add 30 ms for Pusher's answer. Also the
// hot room's drain (hot-drain-s: first consumed event -> the fake has all
// 10,000), Pusher calls per hot event (hot-calls/event, 0.1 at best: 10
// events a call) and per event overall (calls/event).
//
// Checked: every event stored once and delivered, each room's seqs arriving
// at the fake as 1, 2, 3, ... (nothing lost, repeated or out of order),
// nothing dead-lettered. Target (issue "Nothing stalls"): the cold rooms'
// commit -> Pusher p99 under 2 round trips + 50 ms, 110 ms here.
func BenchmarkIngestHotRoom(b *testing.B) {
	st := startIngestStackWith(b, map[string]string{"track_commit_timestamp": "on"})
	for i := 0; i < b.N; i++ {
		r := st.runHotRoom(b, fmt.Sprintf("hot-%d", i))
		b.ReportMetric(ms(quantile(r.produced, 0.50)), "cold-p50-ms")
		b.ReportMetric(ms(quantile(r.produced, 0.99)), "cold-p99-ms")
		b.ReportMetric(ms(r.produced[len(r.produced)-1]), "cold-max-ms")
		b.ReportMetric(ms(quantile(r.committed, 0.50)), "cold-commit-p50-ms")
		b.ReportMetric(ms(quantile(r.committed, 0.99)), "cold-commit-p99-ms")
		b.ReportMetric(ms(r.committed[len(r.committed)-1]), "cold-commit-max-ms")
		b.ReportMetric(r.drain.Seconds(), "hot-drain-s")
		b.ReportMetric(r.hotCallsPerEvent, "hot-calls/event")
		b.ReportMetric(r.callsPerEvent, "calls/event")
	}
}

type hotRoomResult struct {
	produced, committed []time.Duration // cold events: produce -> Pusher, commit -> Pusher, sorted
	drain               time.Duration
	hotCallsPerEvent    float64
	callsPerEvent       float64
}

func (st *ingestStack) runHotRoom(b *testing.B, name string) hotRoomResult {
	b.Helper()
	topic, dbURL := st.prepare(b, name)
	hot := fmt.Sprintf("room-%s-hot", name)
	producer := newIngestProducer(b, st.kafka.Brokers())
	defer func() { _ = producer.Close() }()
	want := map[string]int{} // events owed per room channel
	var warm []*chattest.Event
	for c := range hotColdRooms {
		room := ingestRoom(name, c)
		warm = append(warm, chattest.MessageCreated(room, room+"-warm", "before the hot room"))
		want[domain.RoomChannel(room)]++
	}
	sendIngestMessages(b, producer, ingestMessages(topic, warm))
	for start := 0; start < hotBacklog; start += 1000 {
		events := make([]*chattest.Event, 0, 1000)
		for k := start; k < min(hotBacklog, start+1000); k++ {
			events = append(events, chattest.MessageCreated(hot, ingestMessageID(hot, k), "the hot room speaks"))
		}
		sendIngestMessages(b, producer, ingestMessages(topic, events))
	}
	want[domain.RoomChannel(hot)] = hotBacklog

	db, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	st.pusher.Reset()
	p := st.startRoomcast(b, name, topic, dbURL, nil)
	first := p.waitConsumed(b, name)
	stopProgress := p.startProgress(name, first, st.pusher, db)
	defer stopProgress()

	cold := hotColdRate * hotColdSeconds
	messageOf := make(map[string]string, cold) // cold stream: event id -> message id
	producedAt, held := produceSteady(b, producer, topic, hotColdRate, cold, func(i int) (*chattest.Event, string) {
		room := ingestRoom(name, i%hotColdRooms)
		id := fmt.Sprintf("%s-c%d", room, i)
		e := chattest.MessageCreated(room, id, "a cold room speaks")
		messageOf[e.ID] = id
		want[domain.RoomChannel(room)]++
		return e, id
	})
	total := hotColdRooms + hotBacklog + cold
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := st.pusher.WaitForEvents(ctx, total); err != nil {
		b.Fatalf("%s: %d of %d events delivered: %v\n%s", name, len(st.pusher.Events()), total, err, p.tail(30))
	}
	waitStoredAndDelivered(b, ctx, db, name, total)
	stopProgress()
	m, err := p.scrape()
	if err != nil {
		b.Fatalf("%s: /metrics: %v", name, err)
	}
	if dead := m.sum("roomcast_events_dead_lettered_total"); dead != 0 {
		b.Fatalf("%s: %v events dead-lettered\n%s", name, dead, p.tail(30))
	}
	var rows, distinct int64
	if err := db.QueryRow(ctx, `SELECT count(*), count(DISTINCT id) FROM events`).Scan(&rows, &distinct); err != nil {
		b.Fatalf("%s: count events: %v", name, err)
	}
	if rows != int64(total) || distinct != int64(total) {
		b.Fatalf("%s: %d events rows (%d distinct ids), want %d", name, rows, distinct, total)
	}
	stored := storedCommits(b, ctx, db, name, hot, messageOf)
	events := st.pusher.Events()
	checkRoomOrder(b, name, events, want)

	var r hotRoomResult
	var hotLast time.Time
	var inHot, inOthers []time.Duration // produce -> Pusher by partition: the hot room's, the others
	hotCalls, coldCalls := map[int64]bool{}, map[int64]bool{}
	for _, e := range events {
		if e.Channel == domain.RoomChannel(hot) {
			hotCalls[e.Call] = true
			if e.ReceivedAt.After(hotLast) {
				hotLast = e.ReceivedAt
			}
			continue
		}
		var payload struct{ ID string }
		if err := json.Unmarshal([]byte(e.Data), &payload); err != nil {
			b.Fatalf("%s: pusher event data %q: %v", name, e.Data, err)
		}
		at, ok := producedAt[payload.ID]
		if !ok {
			continue // a warm-up event
		}
		coldCalls[e.Call] = true
		r.produced = append(r.produced, e.ReceivedAt.Sub(at))
		r.committed = append(r.committed, e.ReceivedAt.Sub(stored.cold[payload.ID].at))
		if stored.cold[payload.ID].partition == stored.hotPartition {
			inHot = append(inHot, e.ReceivedAt.Sub(at))
		} else {
			inOthers = append(inOthers, e.ReceivedAt.Sub(at))
		}
	}
	if len(r.produced) != cold {
		b.Fatalf("%s: latency of %d cold events, want %d", name, len(r.produced), cold)
	}
	slices.Sort(r.produced)
	slices.Sort(r.committed)
	slices.Sort(inHot)
	slices.Sort(inOthers)
	r.drain = hotLast.Sub(first)
	r.hotCallsPerEvent = float64(len(hotCalls)) / hotBacklog
	r.callsPerEvent = float64(len(st.pusher.Calls())) / float64(total)
	rss := p.peakRSSMB(b)
	p.stop(b)
	b.Logf("%s: cold rooms, %d events at %.0f events/s while the hot room drained: produce -> Pusher p50 %v, p90 %v, p99 %v, max %v; "+
		"commit -> Pusher p50 %v, p90 %v, p99 %v, max %v (arrival at the fake; +%v for its answer); %.3f calls per cold event",
		name, cold, held, quantile(r.produced, 0.50), quantile(r.produced, 0.90), quantile(r.produced, 0.99), r.produced[cold-1],
		quantile(r.committed, 0.50), quantile(r.committed, 0.90), quantile(r.committed, 0.99), r.committed[cold-1],
		ingestPusherDelay, float64(len(coldCalls))/float64(cold))
	b.Logf("%s: hot room: %d events projected %v and delivered %v after the first was consumed, %.3f calls per event; %.3f calls per event overall; peak RSS %.1f MB",
		name, hotBacklog, stored.hotLast.Sub(first).Round(time.Millisecond), r.drain.Round(time.Millisecond), r.hotCallsPerEvent, r.callsPerEvent, rss)
	// Where the produce -> Pusher tail comes from: a cold room that shares
	// the hot room's partition is read after the hot room's backlog.
	if len(inHot) > 0 && len(inOthers) > 0 {
		b.Logf("%s: produce -> Pusher of the cold events in the hot room's partition %d: %d events, p50 %v, p99 %v, max %v; in the other partitions: %d events, p50 %v, p99 %v, max %v",
			name, stored.hotPartition, len(inHot), quantile(inHot, 0.50), quantile(inHot, 0.99), inHot[len(inHot)-1],
			len(inOthers), quantile(inOthers, 0.50), quantile(inOthers, 0.99), inOthers[len(inOthers)-1])
	}
	return r
}

// storedEvents is what Postgres says of the events of BenchmarkIngestHotRoom.
type storedEvents struct {
	cold         map[string]storedEvent // the cold stream's events by message id
	hotLast      time.Time              // the hot room's last commit
	hotPartition int32
}

type storedEvent struct {
	at        time.Time // commit time of the transaction that stored it
	partition int32
}

// storedCommits reads each event's commit time (pg_xact_commit_timestamp
// of its row; Postgres must run with track_commit_timestamp=on) and Kafka
// partition. messageOf maps the cold stream's event ids to message ids.
func storedCommits(b *testing.B, ctx context.Context, db *pgxpool.Pool, name, hot string, messageOf map[string]string) storedEvents {
	b.Helper()
	rows, err := db.Query(ctx, `SELECT id, room_id, kafka_partition, pg_xact_commit_timestamp(xmin) FROM events`)
	if err != nil {
		b.Fatalf("%s: commit times: %v", name, err)
	}
	defer rows.Close()
	st := storedEvents{cold: make(map[string]storedEvent, len(messageOf)), hotPartition: -1}
	for rows.Next() {
		var id, room string
		var partition int32
		var at *time.Time
		if err := rows.Scan(&id, &room, &partition, &at); err != nil {
			b.Fatalf("%s: commit times: %v", name, err)
		}
		if at == nil {
			b.Fatalf("%s: no commit time for event %s (track_commit_timestamp off?)", name, id)
		}
		if room == hot {
			st.hotPartition = partition
			if at.After(st.hotLast) {
				st.hotLast = *at
			}
		}
		if msg, ok := messageOf[id]; ok {
			st.cold[msg] = storedEvent{at: *at, partition: partition}
		}
	}
	if err := rows.Err(); err != nil {
		b.Fatalf("%s: commit times: %v", name, err)
	}
	if len(st.cold) != len(messageOf) {
		b.Fatalf("%s: commit times of %d cold events, want %d", name, len(st.cold), len(messageOf))
	}
	return st
}

// checkRoomOrder requires each room's events to have reached the fake with
// seqs 1, 2, 3, ... (none lost, repeated or out of order) and, unless want
// is nil, want[channel] of them on each room channel, and no other room
// channel.
func checkRoomOrder(b *testing.B, name string, events []fakepusher.Event, want map[string]int) {
	b.Helper()
	last := map[string]int64{}
	for _, e := range events {
		if !strings.HasPrefix(e.Channel, domain.RoomChannelPrefix) {
			continue
		}
		var payload struct{ Seq int64 }
		if err := json.Unmarshal([]byte(e.Data), &payload); err != nil {
			b.Fatalf("%s: pusher event data %q: %v", name, e.Data, err)
		}
		if payload.Seq != last[e.Channel]+1 {
			b.Fatalf("%s: %s received seq %d after seq %d (lost, repeated or out of order)", name, e.Channel, payload.Seq, last[e.Channel])
		}
		last[e.Channel] = payload.Seq
	}
	if want == nil {
		return
	}
	for ch, n := range want {
		if last[ch] != int64(n) {
			b.Fatalf("%s: %s received %d events, want %d", name, ch, last[ch], n)
		}
	}
	if len(last) != len(want) {
		b.Fatalf("%s: events on %d room channels, want %d", name, len(last), len(want))
	}
}
