package publishers

import (
	"context"
	"log/slog"
	"time"
)

// One room may not crowd out the others. A room's lane sends at one call
// in flight (~10 events per round trip, ~300 a second at 30 ms), so a room
// with thousands owed, held whole, would fill the dispatcher's memory (the
// queue, bounded by handoffHold x Fetch): every other room's handoffs were
// then refused and read back only once that had drained, in id order, behind
// the busy room's rows (other rooms waited ~20 s behind a backlog of 10,000).
//
// So a lane holds at most RoomHold deliveries waiting. A room whose lane is
// full is left behind: its later deliveries stay in the outbox, its handoffs
// are not taken, reads of the whole outbox skip it, and it is read on its
// own (its next deliveries after the last one held, PendingInRooms) whenever
// its lane has drained to half. The queue's room and the handoffs stay for
// the other rooms, whose calls go out beside the busy room's.
//
// Order holds as everywhere else: a room's deliveries are taken in seq
// order, and a room behind is read from right after the last one it holds
// (a room's ids rise in its commit order). A read that comes back short has
// everything the room had committed when it ran; the room is then no
// longer behind, and its next handoff joins right behind that read's last
// seq as any other. A failed call forgets who is behind with the rest of
// what is queued (dropQueued): everything is read again after the pause.

// laneFull reports whether room's lane holds RoomHold deliveries waiting,
// and then the id of its last one.
func (p *pipeline) laneFull(room string) (bool, int64) {
	l := p.lanes[room]
	if l == nil || len(l.queue) < p.d.cfg.RoomHold {
		return false, 0
	}
	return true, l.queue[len(l.queue)-1].ID
}

// refillRooms is the most rooms behind read in one statement.
const refillRooms = 100

// refill reads the next deliveries of the rooms behind whose lanes have
// drained to half of RoomHold, within the queue's bound.
func (p *pipeline) refill(ctx context.Context) {
	if len(p.behind) == 0 || time.Now().Before(p.refillRetry) {
		return
	}
	hold := p.d.cfg.RoomHold
	room := handoffHold*p.d.cfg.Fetch - p.queued
	var rooms []string
	var after []int64
	var limits []int
	for key, last := range p.behind {
		if len(rooms) == refillRooms || room < hold {
			break
		}
		waiting := 0
		if l := p.lanes[key]; l != nil {
			waiting = len(l.queue)
		}
		if waiting > hold/2 {
			continue
		}
		rooms, after, limits = append(rooms, key), append(after, last), append(limits, hold-waiting)
		room -= hold - waiting
	}
	if len(rooms) == 0 {
		return
	}
	ds, err := p.d.outbox.PendingInRooms(ctx, rooms, after, limits)
	if err != nil {
		if ctx.Err() == nil {
			p.d.log.Warn("read the outbox for rooms behind", slog.Int("rooms", len(rooms)), slog.Any("error", err))
		}
		p.refillRetry = time.Now().Add(p.d.cfg.PollInterval)
		return
	}
	p.d.metrics.sources.WithLabelValues("read").Add(float64(len(ds)))
	got := make(map[string]int, len(rooms))
	for _, del := range ds {
		got[del.RoomID]++
		p.behind[del.RoomID] = del.ID
		p.lastSeq[del.RoomID] = del.Seq
		if _, held := p.known[del.ID]; !held {
			p.place(del)
		}
	}
	for i, key := range rooms {
		if got[key] < limits[i] {
			// Caught up: the room's next handoff follows this read's last seq.
			delete(p.behind, key)
		}
	}
}

// behindRooms lists the rooms that reads of the whole outbox skip.
func (p *pipeline) behindRooms() []string {
	if len(p.behind) == 0 {
		return nil
	}
	rooms := make([]string, 0, len(p.behind))
	for key := range p.behind {
		rooms = append(rooms, key)
	}
	return rooms
}
