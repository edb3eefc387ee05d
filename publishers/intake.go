package publishers

import (
	"context"
	"time"

	"github.com/roomcast/roomcast/domain"
)

// How deliveries come into the dispatcher's lanes: read from the outbox
// (fetch) or handed over by this process's projector after its commit
// (take), each room's in seq order and, for a room, never more than its
// lane may hold (see fairness.go).

// fetch reads pending deliveries the pipeline does not hold yet into their lanes.
// It reports how many it read and whether that was all it asked for.
func (p *pipeline) fetch(ctx context.Context) (n int, full bool, err error) {
	exclude := make([]int64, 0, len(p.known))
	for id := range p.known {
		exclude = append(exclude, id)
	}
	limit := p.d.cfg.Fetch - p.queued
	ds, err := p.d.outbox.PendingExcept(ctx, limit, exclude, p.behindRooms())
	if err != nil {
		return 0, false, err
	}
	p.d.metrics.sources.WithLabelValues("read").Add(float64(len(ds)))
	if len(ds) == 0 && len(p.known) == 0 && p.inflight == 0 {
		p.d.notFailing() // nothing owed: no stall, whatever the last calls met
	}
	for _, del := range ds {
		if del.RoomID != "" {
			if _, behind := p.behind[del.RoomID]; behind {
				continue // its lane filled up during this read
			}
			if full, last := p.laneFull(del.RoomID); full {
				p.behind[del.RoomID] = last
				continue
			}
			if del.Seq > p.lastSeq[del.RoomID] {
				// Read in id order, which is each room's commit order: the
				// room's earlier deliveries are held, settled or read too.
				p.lastSeq[del.RoomID] = del.Seq
			}
		}
		p.place(del)
	}
	return len(ds), len(ds) >= limit, nil
}

// maxTrackedRooms bounds lastSeq; past it the map starts over (rooms then
// read their next deliveries from the outbox once).
const maxTrackedRooms = 100_000

// handoffHold is how many times Fetch the queue may hold with handoffs. A
// handoff refused for room sends every later delivery of its rooms to the
// outbox until it is read, and under a backlog the queue nears Fetch when
// a few rooms (one call in flight each) hold most of it: with Fetch alone
// as the bound, a backlog could have half its deliveries read back from
// Postgres.
const handoffHold = 2

// take places deliveries handed over after their commit (see Handoff). It
// reports false when it left some to be read from the outbox.
func (p *pipeline) take(ds []domain.Delivery) bool {
	if p.probing || time.Now().Before(p.pauseTill) {
		// Paused: everything held is read again after the pause, fresh (a
		// delete meanwhile redacts the outbox only).
		return false
	}
	if len(p.lastSeq) > maxTrackedRooms {
		clear(p.lastSeq)
	}
	all, placed := true, 0
	defer func() { p.d.metrics.sources.WithLabelValues("handoff").Add(float64(placed)) }()
	for _, del := range ds {
		if _, held := p.known[del.ID]; held {
			continue // read from the outbox before its handoff came
		}
		if del.RoomID != "" {
			if _, behind := p.behind[del.RoomID]; behind {
				continue // read with its room (refill)
			}
			// A room's first delivery (seq 1) has nothing before it.
			if last, ok := p.lastSeq[del.RoomID]; ok && last != del.Seq-1 || !ok && del.Seq != 1 {
				all = false // the room's earlier deliveries may be unread
				continue
			}
			if full, last := p.laneFull(del.RoomID); full {
				p.behind[del.RoomID] = last
				continue
			}
		}
		if p.queued >= handoffHold*p.d.cfg.Fetch {
			// Full: memory stays bounded by handoffHold x Fetch; the rest
			// is read from the outbox (its rooms' chains break here).
			all = false
			continue
		}
		if del.RoomID != "" {
			p.lastSeq[del.RoomID] = del.Seq
		}
		if del.TooLarge {
			continue // parked as it was written
		}
		p.place(del)
		placed++
	}
	return all
}
