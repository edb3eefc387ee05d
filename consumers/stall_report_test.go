package consumers

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fakeStallSource stands in for the subscriber's stall detection.
type fakeStallSource struct{ stalls []Stall }

func (f *fakeStallSource) Stalls(time.Time) []Stall { return f.stalls }

// gaugeByCause reads roomcast_consumer_stalled from r.
func gaugeByCause(t *testing.T, r *stallReport) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(r)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	return got
}

// The report takes the subscriber's stalls through its Stalls method and
// the consumer's own, and reports those older than STALL_AFTER: as short
// lines, and as a gauge whose four causes always exist.
func TestStallReportCombinesTheSubscribersAndItsOwn(t *testing.T) {
	now := time.Now()
	sub := &fakeStallSource{}
	var retry, dead []Stall
	r := newStallReport(2*time.Minute, sub,
		func(time.Time) []Stall { return retry }, func(time.Time) []Stall { return dead })

	if p := r.problems(now); len(p) != 0 {
		t.Errorf("problems %q with no stall, want none", p)
	}
	want := map[string]float64{"partition": 0, "unassigned": 0, "retry": 0, "dead_letter": 0}
	if got := gaugeByCause(t, r); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("gauge %v with no stall, want %v", got, want)
	}

	sub.stalls = []Stall{
		{Cause: "partition", Since: now.Add(-3 * time.Minute), Detail: "partition chat.events/3 has not advanced with 1200 messages of lag"},
		{Cause: "unassigned", Since: now.Add(-time.Minute), Detail: "no partition assigned while the group lags"}, // not yet
	}
	retry = []Stall{{Cause: "retry", Since: now.Add(-2*time.Minute - time.Second), Detail: "12 events failing and retried: postgres unavailable: connection refused"}}
	dead = []Stall{{Cause: "dead_letter", Since: now.Add(-10 * time.Second), Detail: "1 dead letter not published"}} // not yet

	if got := len(r.all(now)); got != 4 {
		t.Errorf("%d stalls now, want all 4 whatever their age", got)
	}
	wantLines := []string{
		"partition chat.events/3 has not advanced with 1200 messages of lag (for 3m0s)",
		"12 events failing and retried: postgres unavailable: connection refused (for 2m1s)",
	}
	if got := r.problems(now); strings.Join(got, "\n") != strings.Join(wantLines, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantLines, "\n"))
	}
	got := gaugeByCause(t, r) // read at time.Now(), a moment after now
	if got["partition"] != 1 || got["retry"] != 1 || got["unassigned"] != 0 || got["dead_letter"] != 0 || len(got) != 4 {
		t.Errorf("gauge %v, want partition and retry 1, the others 0", got)
	}

	// A subscriber without stall detection: only the consumer's own.
	r = newStallReport(time.Minute, struct{}{}, func(time.Time) []Stall { return retry })
	if got := r.problems(now); len(got) != 1 || !strings.Contains(got[0], "postgres unavailable") {
		t.Errorf("problems %q without a subscriber's stalls, want the retry stall", got)
	}
}
