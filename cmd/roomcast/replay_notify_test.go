package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/fakepusher"
	"github.com/roomcast/roomcast/internal/testsupport"
)

// A Pusher app lost everything it was sent (the fake forgets it): `replay
// notify` owes the rooms' stored history again while the worker runs, and
// the worker's dispatcher sends it, each room's events once, in seq
// order, the payloads as first sent; the read models and the event store's
// facts are untouched, a dry run writes nothing, and rooms not named stay
// quiet.
func TestReplayNotifyRefillsALostPusherApp(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	w := s.startWorker(nil)
	w.waitReady()
	events := history("rn", 3, 6)
	s.produceEvents(events...)
	s.waitCount(60*time.Second, int64(distinct(events)), `SELECT count(*) FROM events`)
	s.waitCount(60*time.Second, 0, `SELECT count(*) FROM deliveries WHERE delivered_at IS NULL AND parked_at IS NULL`)
	first := map[string][]fakepusher.Event{}
	for r := range 3 {
		room := fmt.Sprintf("rn-room-%d", r)
		first[room] = sequenced(s.pusher.EventsOn(domain.RoomChannel(room)))
	}
	before := dumpState(t, s.db)
	s.pusher.Reset()

	dry := s.mustCmd(nil, "replay", "notify", "-room", "rn-room-0,rn-room-1", "-dry-run")
	t.Logf("dry run:\n%s", dry.stdout)
	want := len(first["rn-room-0"]) + len(first["rn-room-1"])
	if !strings.Contains(dry.stdout, fmt.Sprintf("%d deliveries of 2 rooms would be owed", want)) {
		t.Errorf("dry run does not count %d deliveries:\n%s", want, dry.stdout)
	}
	owedBefore := s.mustCount(`SELECT count(*) FROM deliveries`)
	time.Sleep(200 * time.Millisecond)
	if n := len(s.pusher.Events()); n != 0 || s.mustCount(`SELECT count(*) FROM deliveries`) != owedBefore {
		t.Fatalf("a dry run sent %d events or wrote deliveries", n)
	}

	r := s.mustCmd(nil, "replay", "notify", "-room", "rn-room-0,rn-room-1")
	t.Logf("replay notify:\n%s", r.stdout)
	if !strings.Contains(r.stdout, fmt.Sprintf("%d deliveries of 2 rooms owed to Pusher again", want)) {
		t.Errorf("summary does not say %d deliveries:\n%s", want, r.stdout)
	}
	testsupport.WaitFor(t, 60*time.Second, "the rooms' history at Pusher again", func() (bool, string) {
		n := len(s.pusher.Events())
		return n >= want, fmt.Sprintf("%d of %d events", n, want)
	})
	s.waitCount(60*time.Second, 0, `SELECT count(*) FROM deliveries WHERE delivered_at IS NULL AND parked_at IS NULL`)
	for _, room := range []string{"rn-room-0", "rn-room-1"} {
		again := s.pusher.EventsOn(domain.RoomChannel(room))
		if len(again) != len(first[room]) {
			t.Errorf("room %s: Pusher got %d events again, first %d", room, len(again), len(first[room]))
			continue
		}
		for i, e := range again {
			f := first[room][i]
			if p := decodePayload(t, e); p.seq() != int64(i+1) || e.Name != f.Name {
				t.Errorf("room %s: event %d is %s seq %d, want %s seq %d", room, i, e.Name, p.seq(), f.Name, i+1)
			} else if e.Data != f.Data && !strings.Contains(e.Data, `"content":""`) {
				// Only a message deleted after it was first sent differs: redacted now.
				t.Errorf("room %s seq %d: sent again %s, first %s", room, i+1, e.Data, f.Data)
			}
		}
	}
	if n := len(s.pusher.EventsOn(domain.RoomChannel("rn-room-2"))); n != 0 {
		t.Errorf("rn-room-2 was not named but got %d events", n)
	}
	sameDump(t, "after replay notify", before, dumpState(t, s.db))
}

// sequenced keeps the events that carry a seq (not notifications).
func sequenced(es []fakepusher.Event) []fakepusher.Event {
	var out []fakepusher.Event
	for _, e := range es {
		if e.Name != domain.PusherNotification {
			out = append(out, e)
		}
	}
	return out
}

// replay notify refuses command lines it cannot act on as usage errors,
// and needs only the database.
func TestReplayNotifyUsage(t *testing.T) {
	t.Parallel()
	env := func(string) string { return "" }
	for _, args := range [][]string{
		{"replay", "notify"}, {"replay", "notify", "-room", ""}, {"replay", "notify", "-room", "a*b"},
		{"replay", "notify", "-room", "r", "-from-seq", "3", "-since", "2026-01-01T00:00:00Z"},
		{"replay", "notify", "-room", "r", "-since", "yesterday"}, {"replay", "notify", "-room", "r", "-from-seq", "-1"},
		{"replay", "notify", "-room", "r", "-since", "2026-01-02T00:00:00Z", "-until", "2026-01-01T00:00:00Z"},
		{"replay", "notify", "-room", "r", "extra"}, {"replay", "notify", "-room", "r", "-chunk", "0"},
	} {
		err := run(t.Context(), args, env, nil, io.Discard, io.Discard)
		if !errors.Is(err, errUsage) {
			t.Errorf("roomcast %s: %v, want a usage error", strings.Join(args, " "), err)
		}
	}
	err := run(t.Context(), []string{"replay", "notify", "-room", "r"}, env, nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "DATABASE_URL") || strings.Contains(err.Error(), "PUSHER") || strings.Contains(err.Error(), "KAFKA") {
		t.Errorf("replay notify without configuration: %v", err)
	}
}
