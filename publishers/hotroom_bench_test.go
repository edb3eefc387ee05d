package publishers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/projections"
	"github.com/roomcast/roomcast/publishers"
)

// BenchmarkDispatcherHotRoom: one room's backlog of 10,000 events arrives at
// once (batches of 100, as the batcher forms them while the topic catches
// up, handed to the dispatcher after each commit) while 100 other rooms
// produce a steady 100 events/s between them, against a Pusher 30 ms away.
// The other rooms spoke before the dispatcher's term began (a restart, a new
// leader), so their first deliveries are read from the outbox. It reports
// the cold rooms' commit-to-Pusher latency (until the event reaches Pusher,
// whose answer comes 30 ms later) while the hot room drains at ~10 events
// per round trip, and the Pusher calls per event over the whole run. Issue
// target: the cold rooms' p99 under 2 round trips + 50 ms (110 ms), calls
// per event as before.
func BenchmarkDispatcherHotRoom(b *testing.B) {
	stack := newBenchStack(b, 30*time.Millisecond)
	const (
		hotEvents   = 10000
		hotBatch    = 100
		coldRooms   = 100
		coldRate    = 100 // events/s over all cold rooms
		coldSeconds = 20  // the hot room takes ~30 s to drain
	)
	for i := 0; i < b.N; i++ {
		saved := backlog
		backlog = 0
		outbox, projector, closeDB := stack.outbox(b)
		backlog = saved
		ctx := context.Background()
		project := func(es ...*chattest.Event) {
			items := make([]projections.Item, len(es))
			for j, e := range es {
				items[j] = projections.Item{Env: e.Envelope(b), Origin: projections.Origin{Partition: -1}}
			}
			res, err := projector.ProjectBatch(ctx, items)
			if err == nil {
				for _, r := range res {
					err = r.Err
				}
			}
			if err != nil {
				b.Error(err)
			}
		}
		coldRoom := func(n int) string { return fmt.Sprintf("cold-%d", n%coldRooms) }
		// Each cold room's first event, delivered in an earlier term.
		var before []*chattest.Event
		for c := range coldRooms {
			before = append(before, chattest.MessageCreated(coldRoom(c), fmt.Sprintf("before-%d", c), "earlier"))
		}
		project(before...)
		if err := outbox.MarkDelivered(ctx, allDeliveryIDs(b, outbox)); err != nil {
			b.Fatal(err)
		}
		stack.pusher.Reset()

		d := publishers.NewDispatcher(outbox, stack.client(), publishers.DispatcherConfig{MaxInFlight: 128})
		projector.OnDeliveriesOwed(d.Wake)
		projector.HandOffDeliveries(d.Handoff)
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- d.Run(runCtx) }()
		time.Sleep(100 * time.Millisecond) // its first read (an empty outbox) is done

		start := time.Now()
		var wg sync.WaitGroup
		wg.Go(func() {
			for n := 0; n < hotEvents; n += hotBatch {
				es := make([]*chattest.Event, hotBatch)
				for j := range es {
					es[j] = chattest.MessageCreated("hot", fmt.Sprintf("hot-%d", n+j), "busy")
				}
				project(es...)
			}
		})
		var mu sync.Mutex
		committed := map[string]time.Time{}
		ticker := time.NewTicker(time.Second / coldRate)
		sem := make(chan struct{}, 16)
		for n := 0; n < coldRate*coldSeconds; n++ {
			<-ticker.C
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				id := fmt.Sprintf("cold-m-%d", n)
				project(chattest.MessageCreated(coldRoom(n), id, "hello"))
				mu.Lock()
				committed[id] = time.Now()
				mu.Unlock()
			})
		}
		ticker.Stop()
		wg.Wait()
		total := hotEvents + coldRate*coldSeconds
		waitCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		if err := stack.pusher.WaitForEvents(waitCtx, total); err != nil {
			b.Fatalf("delivered %d of %d: %v", len(stack.pusher.Events()), total, err)
		}
		cancel()
		drained := time.Since(start)
		stop()
		<-done
		closeDB()

		var lat []time.Duration
		hotCalls, coldCalls := map[int64]bool{}, map[int64]bool{}
		for _, e := range stack.pusher.Events() {
			if e.Channel == domain.RoomChannel("hot") {
				hotCalls[e.Call] = true
				continue
			}
			coldCalls[e.Call] = true
			var p struct{ ID string }
			if json.Unmarshal([]byte(e.Data), &p) == nil {
				if at, ok := committed[p.ID]; ok {
					lat = append(lat, e.ReceivedAt.Sub(at))
				}
			}
		}
		if len(lat) != coldRate*coldSeconds {
			b.Fatalf("measured %d cold events of %d", len(lat), coldRate*coldSeconds)
		}
		slices.Sort(lat)
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		b.ReportMetric(ms(lat[len(lat)/2]), "cold-p50-ms")
		b.ReportMetric(ms(lat[len(lat)*99/100]), "cold-p99-ms")
		b.ReportMetric(ms(lat[len(lat)-1]), "cold-max-ms")
		b.ReportMetric(float64(len(stack.pusher.Calls()))/float64(total), "calls/event")
		// Calls that carried the hot room's events, per hot event (10 a call
		// at best), and calls that carried cold events, per cold event (at
		// 100 events/s a call seldom finds another one waiting).
		b.ReportMetric(float64(len(hotCalls))/hotEvents, "hot-calls/event")
		b.ReportMetric(float64(len(coldCalls))/float64(len(lat)), "cold-calls/event")
		b.ReportMetric(drained.Seconds(), "drain-s")
	}
}

// allDeliveryIDs returns the ids of every pending delivery.
func allDeliveryIDs(b *testing.B, outbox *projections.Outbox) []int64 {
	b.Helper()
	ds, err := outbox.Pending(context.Background(), 100000)
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]int64, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
	}
	return ids
}
