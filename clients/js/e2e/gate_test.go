package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// gate stands between the worker and soketi's HTTP API: it forwards each
// Pusher call, or, while dropping, answers 200 {} without forwarding (the
// call is lost after Pusher accepted it, which no retry repairs). Either
// way it records what was sent on each room channel, by seq.
type gate struct {
	srv      *httptest.Server
	proxy    *httputil.ReverseProxy
	dropping atomic.Bool

	mu      sync.Mutex
	sent    map[string]map[int64]sentEvent // room -> seq -> what the worker sent
	changed chan struct{}
}

// sentEvent is a room event as the worker handed it to Pusher.
type sentEvent struct {
	Name    string
	Data    string // the payload, exactly as sent
	Dropped bool   // some attempt was swallowed by the gate
}

func newGate(t *testing.T, soketiHost string) *gate {
	target, err := url.Parse("http://" + soketiHost)
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{proxy: httputil.NewSingleHostReverseProxy(target), sent: map[string]map[int64]sentEvent{}, changed: make(chan struct{})}
	g.proxy.ErrorLog = nil
	g.proxy.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
		http.Error(w, "soketi unreachable: "+err.Error(), http.StatusBadGateway)
	}
	g.srv = httptest.NewServer(g)
	t.Cleanup(g.srv.Close)
	return g
}

// Host is the gate's "host:port", the worker's PUSHER_HOST.
func (g *gate) Host() string { return strings.TrimPrefix(g.srv.URL, "http://") }

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	drop := g.dropping.Load()
	g.record(body, drop)
	if drop {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	g.proxy.ServeHTTP(w, r)
}

// record notes the room events of an events or batch_events body.
func (g *gate) record(body []byte, dropped bool) {
	var call struct {
		Name     string
		Data     string
		Channel  string
		Channels []string
		Batch    []struct{ Channel, Name, Data string }
	}
	if json.Unmarshal(body, &call) != nil {
		return
	}
	type ev struct{ channel, name, data string }
	var evs []ev
	for _, b := range call.Batch {
		evs = append(evs, ev{b.Channel, b.Name, b.Data})
	}
	for _, c := range append(call.Channels, call.Channel) {
		if c != "" {
			evs = append(evs, ev{c, call.Name, call.Data})
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, e := range evs {
		room, ok := strings.CutPrefix(e.channel, "private-room-")
		var p struct{ Seq int64 }
		if !ok || json.Unmarshal([]byte(e.data), &p) != nil || p.Seq == 0 {
			continue
		}
		if g.sent[room] == nil {
			g.sent[room] = map[int64]sentEvent{}
		}
		prev, seen := g.sent[room][p.Seq]
		g.sent[room][p.Seq] = sentEvent{Name: e.name, Data: e.data, Dropped: dropped || (seen && prev.Dropped)}
	}
	close(g.changed)
	g.changed = make(chan struct{})
}

// Sent is what the worker sent on room's channel, by seq.
func (g *gate) Sent(room string) map[int64]sentEvent {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := map[int64]sentEvent{}
	for s, e := range g.sent[room] {
		out[s] = e
	}
	return out
}

// waitSent waits until the worker has sent seqs 1..last of room.
func (g *gate) waitSent(t *testing.T, room string, last int64) {
	t.Helper()
	waitFor(t, "the worker to send "+room+" up to its last seq", func() (bool, string) {
		sent := g.Sent(room)
		for s := int64(1); s <= last; s++ {
			if _, ok := sent[s]; !ok {
				return false, "missing a seq"
			}
		}
		return true, ""
	})
}
