package publishers

import (
	"fmt"

	"github.com/roomcast/roomcast/domain"
)

// lane holds one room's undelivered deliveries in seq order (or one
// notification's, which have no order).
type lane struct {
	key     string
	queue   []domain.Delivery
	busy    bool // a call with this lane's deliveries is in flight
	isolate int  // how many head deliveries must go alone (after a rejected batch)
	inReady bool
}

// place queues a delivery in its lane, or with those that go in a call of
// their own: a trigger on several channels, and a terminate call (no
// batch carries one). A terminate call has no room: it keeps no order with
// the room's events, its user-left among them (see docs/contract.md).
func (p *pipeline) place(del domain.Delivery) {
	p.known[del.ID] = struct{}{}
	p.queued++
	if len(del.Channels) > 1 || domain.IsTermination(del) {
		p.solo = append(p.solo, del)
		return
	}
	key := del.RoomID
	if key == "" {
		key = fmt.Sprintf("#%d", del.ID) // a notification: no order to keep
	}
	l := p.lanes[key]
	if l == nil {
		l = &lane{key: key}
		p.lanes[key] = l
	}
	l.queue = append(l.queue, del)
	p.makeReady(l)
}

func (p *pipeline) makeReady(l *lane) {
	if l.busy || l.inReady || len(l.queue) == 0 {
		if !l.busy && len(l.queue) == 0 {
			delete(p.lanes, l.key)
		}
		return
	}
	l.inReady = true
	p.ready = append(p.ready, l)
}

// requeue puts a call's deliveries back at the head of their lanes, in order.
func (p *pipeline) requeue(c *call) {
	p.queued += len(c.ds)
	if c.solo {
		p.solo = append(c.ds, p.solo...)
		return
	}
	for _, l := range c.lanes {
		var mine []domain.Delivery
		for _, del := range c.ds {
			if laneKey(del) == l.key {
				mine = append(mine, del)
			}
		}
		l.queue = append(mine, l.queue...)
		if p.lanes[l.key] == nil {
			p.lanes[l.key] = l
		}
	}
}

// dropQueued forgets every delivery waiting in memory (not those in flight).
// Lanes with a call in flight stay, so that what is read again for their
// room waits behind that call.
func (p *pipeline) dropQueued() {
	for key, l := range p.lanes {
		for _, del := range l.queue {
			delete(p.known, del.ID)
		}
		l.queue, l.inReady = nil, false
		if !l.busy {
			delete(p.lanes, key)
		}
	}
	for _, del := range p.solo {
		delete(p.known, del.ID)
	}
	p.ready, p.solo, p.queued = nil, nil, 0
	clear(p.lastSeq) // what was dropped is unread again
	clear(p.behind)  // and so is everything after it
}

func laneKey(del domain.Delivery) string {
	if del.RoomID != "" {
		return del.RoomID
	}
	return fmt.Sprintf("#%d", del.ID)
}
