package fakepusher

import (
	"regexp"
	"strconv"
	"testing"
)

func TestEventLogKeepsOrderAcrossChunks(t *testing.T) {
	var l eventLog
	const n = 2*eventChunk + 7
	for i := 0; i < n; i += 3 {
		var batch []Event
		for j := i; j < min(i+3, n); j++ {
			batch = append(batch, Event{Data: strconv.Itoa(j)})
		}
		l.add(batch)
	}
	all := l.all()
	if l.n != n || len(all) != n {
		t.Fatalf("%d events counted, %d returned, want %d", l.n, len(all), n)
	}
	for i, e := range all {
		if e.Data != strconv.Itoa(i) {
			t.Fatalf("event %d is %q", i, e.Data)
		}
	}
}

func TestValidChannelName(t *testing.T) {
	re := regexp.MustCompile(`^[-a-zA-Z0-9_=@,.;]+$`)
	names := []string{"", "private-room-r1", "presence-x@y,z.w;v=1_2", "a b", "é", "a\n", "#x", "room/1"}
	for c := 0; c < 256; c++ {
		names = append(names, string([]byte{byte(c)}), "ok-"+string([]byte{byte(c)}))
	}
	for _, n := range names {
		if got, want := validChannelName(n), re.MatchString(n); got != want {
			t.Errorf("validChannelName(%q) = %v, the expression says %v", n, got, want)
		}
	}
}
