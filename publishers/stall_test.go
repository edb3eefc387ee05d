package publishers_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/roomcast/roomcast/internal/chattest"
)

// gauge reads a gauge from reg (-1 when it is not there).
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// While Pusher is down (the fake's outage), deliveries wait; once that has
// lasted StallAfter, roomcast_dispatcher_stalled is 1 and Problems() says
// so in a short line without URL, host or secret, and both clear once
// Pusher accepts calls again. A refusal of the credentials is in Problems()
// at once, and a stall too after StallAfter.
func TestDispatcherReportsAStall(t *testing.T) {
	t.Parallel()
	const stallAfter = 300 * time.Millisecond
	for _, tc := range []struct {
		name      string
		status    int    // the fake's answer: 503 (SetDown) or 401
		at        string // what the line names
		reportNow bool   // in Problems() from the first refused call
	}{
		{"outage", 503, "status 503", false},
		{"credentials refused", 401, "PUSHER_SECRET", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newIdleFixture(t)
			reg := prometheus.NewRegistry()
			cfg := dispatcherConfig
			cfg.StallAfter = stallAfter
			cfg.Registerer = reg
			f.useConfig(f.client, cfg)
			if tc.status == 503 {
				f.srv.SetDown(true)
			} else {
				f.srv.FailNext(1<<30, tc.status)
			}
			if g := gauge(t, reg, "roomcast_dispatcher_stalled"); g != 0 {
				t.Fatalf("roomcast_dispatcher_stalled = %v before anything, want 0", g)
			}
			f.project(chattest.MessageCreated("room-s", "s-1", "hello"))
			f.start()
			var firstRefused time.Time
			f.eventually("a refused call", func() bool {
				for _, c := range f.srv.Calls() {
					if c.Status >= 400 {
						firstRefused = c.At
						return true
					}
				}
				return false
			})
			if tc.reportNow {
				f.eventually("Problems() to report the refusal", func() bool { return len(f.dispatcher.Problems()) > 0 })
			}
			var stalledAt time.Time
			f.eventually("roomcast_dispatcher_stalled = 1", func() bool {
				v := gauge(t, reg, "roomcast_dispatcher_stalled")
				stalledAt = time.Now()
				return v == 1
			})
			// Never early: the fake answered the first refused call before
			// the dispatcher noted it, so at least StallAfter lies between.
			if after := stalledAt.Sub(firstRefused); after < stallAfter {
				t.Errorf("stalled %v after the first refused call, before StallAfter (%v)", after, stallAfter)
			}
			problems := f.dispatcher.Problems()
			if len(problems) != 1 {
				t.Fatalf("Problems() = %q, want one line", problems)
			}
			line := problems[0]
			t.Logf("Problems(): %s", line)
			if !strings.Contains(line, tc.at) || len(line) > 240 {
				t.Errorf("Problems() line %q: want a short line naming %q", line, tc.at)
			}
			for _, bad := range []string{"http", "127.0.0.1", f.srv.Host(), appSecret, "auth_"} {
				if strings.Contains(line, bad) {
					t.Errorf("Problems() line %q carries %q", line, bad)
				}
			}

			// Pusher takes the calls again: the stall clears.
			f.srv.SetDown(false)
			f.srv.FailNext(0, 0)
			f.waitEvents(1)
			f.eventually("the stall to clear", func() bool {
				return gauge(t, reg, "roomcast_dispatcher_stalled") == 0 && len(f.dispatcher.Problems()) == 0
			})
		})
	}
}
