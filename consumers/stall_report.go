package consumers

import (
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// stallCauses are the values of Stall.Cause and of roomcast_consumer_stalled's cause.
var stallCauses = []string{"partition", "unassigned", "retry", "dead_letter"}

// stallReport combines the stalls of the subscriber and of the consumer's
// own stages, and reports those that lasted longer than after: as
// Problems lines and as roomcast_consumer_stalled{cause} (a
// prometheus.Collector, read at scrape time).
type stallReport struct {
	sources []func(time.Time) []Stall
	after   time.Duration
	desc    *prometheus.Desc
}

// newStallReport reports the stalls of sub, when it has any (a Stalls
// method), and of own.
func newStallReport(after time.Duration, sub any, own ...func(time.Time) []Stall) *stallReport {
	r := &stallReport{after: after, desc: prometheus.NewDesc("roomcast_consumer_stalled",
		"1 while a condition that keeps events from progressing has lasted longer than STALL_AFTER, by cause (partition, unassigned, retry, dead_letter), else 0.",
		[]string{"cause"}, nil)}
	if s, ok := sub.(interface{ Stalls(time.Time) []Stall }); ok {
		r.sources = append(r.sources, s.Stalls)
	}
	r.sources = append(r.sources, own...)
	return r
}

// all returns every stall now, whatever its age, oldest first.
func (r *stallReport) all(now time.Time) []Stall {
	var stalls []Stall
	for _, src := range r.sources {
		stalls = append(stalls, src(now)...)
	}
	slices.SortStableFunc(stalls, func(a, b Stall) int { return a.Since.Compare(b.Since) })
	return stalls
}

// stalled returns the stalls that have lasted longer than after, oldest first.
func (r *stallReport) stalled(now time.Time) []Stall {
	return slices.DeleteFunc(r.all(now), func(s Stall) bool { return now.Sub(s.Since) <= r.after })
}

// problems is one short line per stall that lasted longer than after.
func (r *stallReport) problems(now time.Time) []string {
	var lines []string
	for _, s := range r.stalled(now) {
		lines = append(lines, fmt.Sprintf("%s (for %s)", s.Detail, now.Sub(s.Since).Round(time.Second)))
	}
	return lines
}

func (r *stallReport) Describe(ch chan<- *prometheus.Desc) { ch <- r.desc }

func (r *stallReport) Collect(ch chan<- prometheus.Metric) {
	stalled := map[string]bool{}
	for _, s := range r.stalled(time.Now()) {
		stalled[s.Cause] = true
	}
	for _, cause := range stallCauses {
		v := 0.0
		if stalled[cause] {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(r.desc, prometheus.GaugeValue, v, cause)
	}
}
