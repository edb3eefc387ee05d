package consumers

import (
	"testing"
	"time"
)

func TestCatchUpPause(t *testing.T) {
	cfg := CatchUpConfig{}
	cfg.setDefaults() // ratio 0.5, at least 1000 left, paused at most 1s
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	paused := catchUpState{paused: true, pausedSince: t0}
	resumed := catchUpState{resumedAt: t0} // MaxPause ended a pause at t0
	off := cfg
	off.Ratio = -1
	for _, tc := range []struct {
		name          string
		cfg           CatchUpConfig
		backlog, most int64
		st            catchUpState
		now           time.Time
		want          bool
	}{
		{"far behind the largest", cfg, 4000, 10000, catchUpState{}, t0, true},
		{"at the ratio", cfg, 5000, 10000, catchUpState{}, t0, false},
		{"the largest itself", cfg, 10000, 10000, catchUpState{}, t0, false},
		{"near its head (realtime)", cfg, 999, 100000, catchUpState{}, t0, false},
		{"caught up", cfg, 0, 100000, catchUpState{}, t0, false},
		{"balancing off", off, 4000, 10000, catchUpState{}, t0, false},
		{"paused, still behind, within MaxPause", cfg, 4000, 10000, paused, t0.Add(999 * time.Millisecond), true},
		{"paused for MaxPause", cfg, 4000, 10000, paused, t0.Add(time.Second), false},
		{"paused, the others came down to it", cfg, 4000, 8000, paused, t0.Add(10 * time.Millisecond), false},
		{"fetched again after MaxPause: not paused at once", cfg, 4000, 10000, resumed, t0.Add(249 * time.Millisecond), false},
		{"fetched again after MaxPause: paused after a quarter of it", cfg, 4000, 10000, resumed, t0.Add(250 * time.Millisecond), true},
	} {
		if got := tc.cfg.pause(tc.backlog, tc.most, tc.st, tc.now); got != tc.want {
			t.Errorf("%s: pause(%d of %d) = %v, want %v", tc.name, tc.backlog, tc.most, got, tc.want)
		}
	}
}

func TestCatchUpConfigValidate(t *testing.T) {
	for _, c := range []CatchUpConfig{{Ratio: 1}, {MinBacklog: -1}, {MaxPause: -time.Second}, {Interval: -time.Second}} {
		if err := c.validate(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	for _, c := range []CatchUpConfig{{}, {Ratio: -1}, {Ratio: 0.9, MinBacklog: 1, MaxPause: time.Second, Interval: time.Millisecond}} {
		if err := c.validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
}
