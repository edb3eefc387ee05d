package consumers

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// Crash stops s as a killed process would stop: every connection of its
// subscriptions is cut at once and none is opened again, so nothing more
// reaches the broker (no commit, no LeaveGroup); then it closes s.
func (s *KeyedSubscriber) Crash() error {
	s.mu.Lock()
	conns := slices.Clone(s.conns)
	s.mu.Unlock()
	for _, c := range conns {
		c.crash()
	}
	return s.Close()
}

// NewLagCollector is newLagCollector, for tests that read the metrics.
func NewLagCollector(s *KeyedSubscriber) prometheus.Collector { return newLagCollector(s) }
