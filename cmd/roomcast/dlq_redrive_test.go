package main

import (
	"testing"
	"time"

	"github.com/roomcast/roomcast/internal/chattest"
)

// An edit that reached Kafka before its message is dead-lettered; a newer
// edit then applies live; re-driving the old edit afterwards must not move
// the text back: it is recorded as unchanged (no seq, no delivery), and the
// message keeps the newer text. A replay of the topic into an empty
// database ends the same way.
func TestDLQRedriveNeverMovesTextBackwards(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	w := s.startWorker(nil)
	const room, msg = "rd-room", "rd-m1"
	// In the order they happened: created, edited, edited again.
	created := chattest.MessageCreated(room, msg, "original")
	older := chattest.MessageEdited(room, msg, "older edit")
	newer := chattest.MessageEdited(room, msg, "newer edit")

	s.produceEvents(older) // reached Kafka before its message: unknown message
	readTopic(t, s.brokers, s.dlq, 1, 60*time.Second)
	s.produceEvents(created, newer)
	s.waitCount(30*time.Second, 1, `SELECT count(*) FROM events WHERE id = $1`, newer.ID)

	s.mustCmd(nil, "dlq", "redrive", "-reason", "unknown message")
	s.waitCount(30*time.Second, 1, `SELECT count(*) FROM events WHERE id = $1`, older.ID)
	var content string
	if err := s.db.QueryRow(t.Context(), `SELECT content FROM messages WHERE id = $1`, msg).Scan(&content); err != nil {
		t.Fatal(err)
	}
	if content != "newer edit" {
		t.Errorf("after re-driving the older edit the text is %q, want %q", content, "newer edit")
	}
	if n := s.mustCount(`SELECT count(*) FROM events WHERE id = $1 AND seq IS NULL`, older.ID); n != 1 {
		t.Errorf("the re-driven older edit got a seq")
	}
	if n := s.mustCount(`SELECT count(*) FROM deliveries WHERE event_id = $1`, older.ID); n != 0 {
		t.Errorf("the re-driven older edit owes %d deliveries", n)
	}
	assertGapFree(t, s.roomSeqs(), map[string]int{room: 2})
	w.stop()

	// The topic replayed into an empty database: the same text.
	url, fresh := s.otherDatabase()
	s.mustCmd(map[string]string{"DATABASE_URL": url}, "replay", "kafka", "-from", "earliest", "-live-group", "-", "-dead-letter=false")
	if err := fresh.QueryRow(t.Context(), `SELECT content FROM messages WHERE id = $1`, msg).Scan(&content); err != nil {
		t.Fatal(err)
	}
	if content != "newer edit" {
		t.Errorf("replayed: the text is %q, want %q", content, "newer edit")
	}
	// And a rebuild of the first database keeps it too.
	s.mustCmd(nil, "replay", "rebuild")
	if err := s.db.QueryRow(t.Context(), `SELECT content FROM messages WHERE id = $1`, msg).Scan(&content); err != nil {
		t.Fatal(err)
	}
	if content != "newer edit" {
		t.Errorf("rebuilt: the text is %q, want %q", content, "newer edit")
	}
}
