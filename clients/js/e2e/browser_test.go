package e2e

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/roomcast/roomcast/internal/soketi"
)

// browser drives clients/js/test/e2e.mjs: users of the client library.
type browser struct {
	t  *testing.T
	js *soketi.Script
}

// line is any line e2e.mjs prints (fields by type).
type line struct {
	Type    string
	User    string
	Room    string
	Seq     int64
	Event   string
	Data    json.RawMessage
	State   string
	Kind    string
	Status  int
	Fatal   bool
	Message string
	Members []member
}

type member struct {
	ID   string `json:"id"`
	Info struct {
		Name   string  `json:"name"`
		Avatar *string `json:"avatar"`
	} `json:"info"`
}

func (b *browser) do(cmd map[string]any) {
	b.t.Helper()
	if err := b.js.Send(cmd); err != nil {
		b.t.Fatalf("send %v: %v\n%s", cmd, err, b.js.Transcript())
	}
}

// await waits for a line of typ for which match holds.
func (b *browser) await(typ string, match func(line) bool) line {
	b.t.Helper()
	raw := b.js.Await(b.t, 60*time.Second, typ, func(raw json.RawMessage) bool {
		var l line
		return json.Unmarshal(raw, &l) == nil && match(l)
	})
	var l line
	_ = json.Unmarshal(raw, &l)
	return l
}

// reach waits until user's room has handed over seq.
func (b *browser) reach(user, room string, seq int64) {
	b.t.Helper()
	b.do(map[string]any{"cmd": "wait", "user": user, "room": room, "seq": seq})
	b.await("reached", func(l line) bool { return l.User == user && l.Room == room && l.Seq >= seq })
}

// events is every event line of user's room so far, in the order printed.
func (b *browser) events(user, room string) []line {
	var out []line
	for _, raw := range b.js.Lines() {
		var l line
		if raw.Type == "event" && json.Unmarshal(raw.Raw, &l) == nil && l.User == user && l.Room == room {
			out = append(out, l)
		}
	}
	return out
}

// checkExactHistory fails t unless user's room handed over seq 1..last,
// each once and in order.
func (b *browser) checkExactHistory(user, room string, last int64) []line {
	b.t.Helper()
	evs := b.events(user, room)
	seqs := make([]int64, len(evs))
	for i, e := range evs {
		seqs[i] = e.Seq
	}
	ok := len(seqs) == int(last)
	for i := 0; ok && i < len(seqs); i++ {
		ok = seqs[i] == int64(i+1)
	}
	if !ok {
		b.t.Fatalf("%s's %s handed over seqs %v, want 1..%d each once in order", user, room, seqs, last)
	}
	return evs
}

func describe(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
