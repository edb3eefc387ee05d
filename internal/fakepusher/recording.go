package fakepusher

import (
	"context"
	"errors"
	"fmt"
)

var errClosed = errors.New("fakepusher: server closed")

// Events returns a copy of all recorded events in acceptance order.
func (s *Server) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events.all()
}

// EventsOn returns a copy of the recorded events on channel, in acceptance order.
func (s *Server) EventsOn(channel string) []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Event
	for _, chunk := range s.events.chunks {
		for _, e := range chunk {
			if e.Channel == channel {
				out = append(out, e)
			}
		}
	}
	return out
}

// Calls returns a copy of every answered HTTP call (accepted or rejected) in the order they were answered.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// Reset forgets recorded events, terminations and calls and restarts call numbering at 1; injected faults and latency are kept.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = eventLog{}
	s.terminations = nil
	s.calls = nil
	s.seq = 0
	s.notifyLocked()
}

// WaitForEvents blocks until at least n events are recorded, returning ctx's error if it ends first or an error if the server is closed.
func (s *Server) WaitForEvents(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		have, closed, ch := s.events.n, s.closed, s.changed
		s.mu.Unlock()
		if have >= n {
			return nil
		}
		if closed {
			return fmt.Errorf("%w with %d of %d events recorded", errClosed, have, n)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("fakepusher: %d of %d events recorded: %w", have, n, ctx.Err())
		}
	}
}

// notifyLocked wakes every WaitForEvents; s.mu must be held.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// eventLog keeps the accepted events in chunks of eventChunk, so that
// recording some never copies the ones before: a growing slice of a
// benchmark's hundreds of thousands of events is reallocated and copied
// again and again, on the CPU the worker being measured shares.
type eventLog struct {
	chunks [][]Event
	n      int
}

const eventChunk = 4096

func (l *eventLog) add(es []Event) {
	for _, e := range es {
		if len(l.chunks) == 0 || len(l.chunks[len(l.chunks)-1]) == eventChunk {
			l.chunks = append(l.chunks, make([]Event, 0, eventChunk))
		}
		last := &l.chunks[len(l.chunks)-1]
		*last = append(*last, e)
	}
	l.n += len(es)
}

// all returns a copy of every event in order.
func (l *eventLog) all() []Event {
	out := make([]Event, 0, l.n)
	for _, c := range l.chunks {
		out = append(out, c...)
	}
	return out
}
