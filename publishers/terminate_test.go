package publishers_test

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/publishers"
)

// counter returns the value of the counter name with the given labels, or -1.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

// terminateCalls returns the statuses of the fake's answers on terminate paths.
func (f *fixture) terminateCalls() []int {
	var out []int
	for _, c := range f.srv.Calls() {
		if strings.HasSuffix(c.Path, "/terminate_connections") {
			out = append(out, c.Status)
		}
	}
	return out
}

func TestTerminateUserConnectionsIsSignedAsTheFakeChecks(t *testing.T) {
	t.Parallel()
	f := newIdleFixture(t)
	client := publishers.NewClient(publishers.ClientConfig{AppID: appID, Key: appKey, Secret: appSecret, Host: f.srv.Host()})
	if err := publishers.TerminateUserConnections(client, "u-7"); err != nil {
		t.Fatalf("terminate u-7: %v", err)
	}
	if got := f.srv.TerminatedUsers(); len(got) != 1 || got[0] != "u-7" {
		t.Fatalf("terminated users = %q, want [u-7]", got)
	}
	// A call signed with another secret is refused, as Pusher refuses it,
	// and comes back as pusher-http-go reports an HTTP error.
	wrong := publishers.NewClient(publishers.ClientConfig{AppID: appID, Key: appKey, Secret: "not-the-secret", Host: f.srv.Host()})
	err := publishers.TerminateUserConnections(wrong, "u-8")
	if err == nil || !strings.HasPrefix(err.Error(), "Status Code: 401 - Invalid signature") {
		t.Errorf("terminate with a wrong secret: %v, want Status Code: 401 - Invalid signature...", err)
	}
	// An id outside the contract's charset never reaches Pusher.
	if err := publishers.TerminateUserConnections(client, "u/9"); err == nil {
		t.Error("terminate u/9: want an error")
	}
	// Pusher away: a network error, which the dispatcher retries.
	_ = f.srv.Close()
	var urlErr *url.Error
	if err := publishers.TerminateUserConnections(client, "u-7"); !errors.As(err, &urlErr) {
		t.Errorf("terminate with Pusher away: %v (%T), want a *url.Error", err, err)
	}
	if got := f.srv.TerminatedUsers(); len(got) != 1 {
		t.Errorf("terminated users = %q, want u-7 alone", got)
	}
}

// With the setting on, a member leaving a room makes roomcast ask Pusher to
// terminate the user's connections: through the outbox, in a call of its
// own, retried after a 5xx like any delivery and then accepted exactly once,
// whether the dispatcher reads it from the outbox or is handed it after the
// commit.
func TestLeavingARoomTerminatesTheUsersConnectionsOnceAcrossARetry(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		handoff bool
	}{{"read from the outbox", false}, {"handed over", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			leaveAndTerminateAcrossARetry(t, tc.handoff)
		})
	}
}

func leaveAndTerminateAcrossARetry(t *testing.T, handoff bool) {
	f := newIdleFixture(t)
	reg := prometheus.NewRegistry()
	cfg := dispatcherConfig
	cfg.Registerer = reg
	f.useConfig(f.client, cfg)
	if handoff {
		f.projector.HandOffDeliveries(f.dispatcher.Handoff)
	}
	f.projector.TerminateConnectionsOnLeave(true)
	var refused atomic.Int32
	f.srv.RejectTerminationWhen(func(string) int {
		if refused.Add(1) == 1 {
			return 503 // the first terminate call meets an outage
		}
		return 0
	})
	f.start()

	f.project(chattest.MemberJoined("room-t", "u-7"))
	f.project(chattest.MemberJoined("room-t", "u-8"))
	f.project(chattest.MessageCreated("room-t", "m-1", "hello"))
	left := chattest.MemberLeft("room-t", "u-7")
	f.project(left)
	f.waitEvents(4)
	f.eventually("the terminate call accepted", func() bool { return len(f.srv.TerminatedUsers()) > 0 })
	f.waitSettled()
	time.Sleep(10 * dispatcherConfig.PollInterval) // time to send it again, were it still owed

	if got := f.srv.TerminatedUsers(); len(got) != 1 || got[0] != "u-7" {
		t.Errorf("terminated users = %q, want u-7 exactly once", got)
	}
	if got := f.terminateCalls(); len(got) != 2 || got[0] != 503 || got[1] != 200 {
		t.Errorf("terminate calls answered %v, want [503 200]", got)
	}
	// The room's events went as triggers, none of them the terminate call.
	if got := seqs(t, f.srv, "private-room-room-t"); !slices.Equal(got, oneToN(4)) {
		t.Errorf("seqs on the room = %v, want 1..4", got)
	}
	for _, e := range f.srv.Events() {
		if e.Name == domain.PusherTerminateConnections {
			t.Errorf("the terminate delivery went as an event on %s", e.Channel)
		}
	}
	rows := f.deliveries(left.ID)
	if len(rows) != 2 || rows[1].Name != domain.PusherTerminateConnections {
		t.Fatalf("deliveries of the leave = %+v, want user-left and the terminate call", rows)
	}
	if term := rows[1]; term.DeliveredAt == nil || term.Attempts != 2 || term.LastError == nil || !strings.Contains(*term.LastError, "503") {
		t.Errorf("terminate row: delivered %v, attempts %d, last error %v; want delivered after 2 attempts, the first refused with 503",
			term.DeliveredAt, term.Attempts, term.LastError)
	}
	for status, want := range map[string]float64{"503": 1, "200": 1} {
		if got := counter(t, reg, "roomcast_pusher_calls_total", map[string]string{"endpoint": "terminate_connections", "status": status}); got != want {
			t.Errorf("roomcast_pusher_calls_total{endpoint=terminate_connections,status=%s} = %v, want %v", status, got, want)
		}
	}
}

func TestLeavingARoomTerminatesNothingByDefault(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.project(chattest.MemberJoined("room-d", "u-7"))
	f.project(chattest.MemberLeft("room-d", "u-7"))
	f.waitEvents(2)
	f.waitSettled()
	time.Sleep(5 * dispatcherConfig.PollInterval)
	if got := f.srv.TerminatedUsers(); len(got) != 0 {
		t.Errorf("terminated users = %q, want none", got)
	}
	if got := f.terminateCalls(); len(got) != 0 {
		t.Errorf("terminate calls answered %v, want none", got)
	}
}

// A terminate call Pusher refuses for good is parked like any delivery, and
// the room's events go on.
func TestARefusedTerminateCallIsParked(t *testing.T) {
	t.Parallel()
	f := newIdleFixture(t)
	f.projector.TerminateConnectionsOnLeave(true)
	f.srv.RejectTerminationWhen(func(user string) int {
		if user == "u-bad" {
			return 400
		}
		return 0
	})
	f.start()
	f.project(chattest.MemberJoined("room-p", "u-bad"))
	left := chattest.MemberLeft("room-p", "u-bad")
	f.project(left)
	f.project(chattest.MessageCreated("room-p", "m-1", "after"))
	f.waitEvents(3)
	f.waitSettled()
	rows := f.deliveries(left.ID)
	if len(rows) != 2 || rows[1].ParkedAt == nil || rows[1].ParkedReason == nil || !strings.Contains(*rows[1].ParkedReason, "400") {
		t.Fatalf("deliveries of the leave = %+v, want the terminate call parked with Pusher's 400", rows)
	}
	if got := f.terminateCalls(); len(got) != 1 || got[0] != 400 {
		t.Errorf("terminate calls answered %v, want one 400 (never sent again)", got)
	}
	if got := seqs(t, f.srv, "private-room-room-p"); !slices.Equal(got, oneToN(3)) {
		t.Errorf("seqs on the room = %v, want 1..3", got)
	}
}
