package fakepusher

import "time"

// SetLatency delays the answer to every subsequent call by d (0 disables).
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// FailNext answers the next n authenticated calls with status and records none of their events.
func (s *Server) FailNext(n int, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN = max(n, 0)
	s.failCode = status
}

// SetDown makes authenticated calls get 503 "service unavailable" and record nothing while down is true.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// RejectWhen installs a per-event rule (nil removes it): if f returns a non-zero status for any event of a valid call, the whole call is answered with it and nothing of it is recorded.
//
// f receives each event of the call (one per channel) with Call still 0; it must not call methods of s that block on a call in progress.
func (s *Server) RejectWhen(f func(Event) int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reject = f
}
