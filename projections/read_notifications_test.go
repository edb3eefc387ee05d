package projections_test

import (
	"context"
	"strings"
	"testing"

	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/projections"
)

// A user's notifications are the user notifications that name them, oldest
// first, after a cursor, each with the payload Pusher was sent on their
// channel (truncated bodies too) and the whole body; another user's and
// rooms notifications are not theirs.
func TestUserNotificationsAreTheOnesSentToTheUser(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var mine []*chattest.Event
	for i := range 5 {
		to := []string{"u-1", "u-2"}
		if i%2 == 1 {
			to = []string{"u-3", "u-1", "u-1"} // duplicates delivered once
		}
		e := chattest.UserNotification(to, "n"+string(rune('a'+i)))
		if i == 3 {
			e.Data["notification"].(map[string]any)["body"] = strings.Repeat("\x01", 1990) + strings.Repeat("長", 10)
		}
		mine = append(mine, e)
		f.project(e)
		f.project(chattest.UserNotification([]string{"u-2"}, "not for u-1"))
		f.project(chattest.RoomsNotification([]string{"u-1"}, "a room named like the user"))
	}
	sent := map[string]string{} // event id -> payload on private-user-u-1
	for _, d := range f.pending() {
		for _, ch := range d.Channels {
			if ch == "private-user-u-1" {
				sent[d.EventID] = d.Data
			}
		}
	}
	var got []projections.UserNotification
	var after int64
	for pages := 0; ; pages++ {
		ns, more, err := projections.UserNotifications(ctx, f.db, "u-1", after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ns {
			if n.Position <= after {
				t.Fatalf("position %d after cursor %d", n.Position, after)
			}
			after = n.Position
		}
		got = append(got, ns...)
		if !more {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
	}
	if len(got) != len(mine) {
		t.Fatalf("u-1 has %d notifications, want %d", len(got), len(mine))
	}
	for i, n := range got {
		e := mine[i]
		if n.EventID != e.ID || n.Data != sent[e.ID] {
			t.Errorf("notification %d: event %s payload %s; want %s %s", i, n.EventID, n.Data, e.ID, sent[e.ID])
		}
		body := e.Data["notification"].(map[string]any)["body"].(string)
		if n.Body != body || n.Truncated != (i == 3) {
			t.Errorf("notification %d: body of %d bytes, truncated %v; want %d bytes, %v", i, len(n.Body), n.Truncated, len(body), i == 3)
		}
	}
	if ns, more, err := projections.UserNotifications(ctx, f.db, "u-404", 0, 10); err != nil || len(ns) != 0 || more {
		t.Errorf("a user without notifications: %d, more %v, %v", len(ns), more, err)
	}
}

// A user's notifications are found through the partial GIN index of
// migration 00008, not by reading the events table.
func TestUserNotificationsReadThroughTheirIndex(t *testing.T) {
	f := newFixture(t)
	for _, q := range []string{
		`INSERT INTO events (id, type, source, room_id, seq, data, fingerprint, occurred_at)
			SELECT 'e-' || g, 'chat.message.created', '/s', 'room-' || (g % 100), g / 100 + 1,
				jsonb_build_object('roomId', 'room-' || (g % 100), 'messageId', 'm-' || g, 'content', 'x'), 'f', now()
			FROM generate_series(0, 49999) AS g`,
		`INSERT INTO events (id, type, source, data, fingerprint, occurred_at)
			SELECT 'n-' || g, 'chat.notification.user', '/s',
				jsonb_build_object('userIds', jsonb_build_array('u-' || (g % 1000), 'u-' || (g % 7)), 'notification', '{}'::jsonb), 'f', now()
			FROM generate_series(0, 19999) AS g`,
		`ANALYZE events`,
	} {
		if err := f.db.Exec(q).Error; err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var lines []string
	if err := f.db.Raw("EXPLAIN "+projections.UserNotificationsSQL, "u-42", 0, 101).Scan(&lines).Error; err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(lines, "\n")
	t.Logf("notifications plan:\n%s", plan)
	if !strings.Contains(plan, "Bitmap Index Scan on events_user_notifications") || strings.Contains(plan, "Seq Scan") {
		t.Errorf("a user's notifications are not read through events_user_notifications:\n%s", plan)
	}
}
