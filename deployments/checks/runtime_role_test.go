package checks

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/internal/testsupport"

	"github.com/jackc/pgx/v5"

	"github.com/roomcast/roomcast/internal/chattest"
)

// TestRuntimeRole: after `migrate up` as the schema's owner, a role given
// only deployments/postgres/runtime-role.sql's grants runs the worker:
// events of every kind are projected (inserts, the redaction of a delete,
// a member leaving) and delivered (the outbox's nextval, its rows deleted
// once Pusher has them); and that role can change neither the schema nor
// the event store's history. The file's read-only role runs `roomcast api`:
// it authorizes a member's channel and serves the room's events, and can
// write no row anywhere.
func TestRuntimeRole(t *testing.T) {
	t.Parallel()
	s := newStack(t, roomcastBinary(t)) // migrated by the test cluster's owner role
	sqlFile, err := os.ReadFile(filepath.Join("..", "..", "deployments", "postgres", "runtime-role.sql"))
	if err != nil {
		t.Fatal(err)
	}
	// Roles belong to the cluster, which the package's tests share.
	suffix := strings.ReplaceAll(strings.ToLower(t.Name()), "/", "_") + fmt.Sprint(time.Now().UnixNano()%1e6)
	role, apiRole := "rc_run_"+suffix, "rc_api_"+suffix
	ctx := t.Context()
	for _, r := range []string{role, apiRole} {
		if _, err := s.db.Exec(ctx, `CREATE ROLE `+r+` LOGIN`); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			// After the worker and the API stopped (cleanups run last
			// first): the role's privileges, then the role.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := s.db.Exec(ctx, `DROP OWNED BY `+r); err != nil {
				t.Logf("drop owned by %s: %v", r, err)
			}
			if _, err := s.db.Exec(ctx, `DROP ROLE `+r); err != nil {
				t.Logf("drop role %s: %v", r, err)
			}
		})
	}
	grants := strings.NewReplacer("roomcast_run", role, "roomcast_api", apiRole).Replace(string(sqlFile))
	if _, err := s.db.Exec(ctx, grants); err != nil {
		t.Fatalf("deployments/postgres/runtime-role.sql: %v", err)
	}
	roleURL := func(r string) string {
		u, err := url.Parse(s.dbURL)
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.User(r) // the test cluster trusts local connections
		return u.String()
	}
	runURL := roleURL(role)

	// DELIVERY_RETENTION=0: delivered rows are deleted, as by default.
	w := s.startWorker(map[string]string{"DATABASE_URL": runURL, "DELIVERY_RETENTION": "0"})
	w.waitReady()
	room := "role-room"
	s.produceEvents(
		chattest.MemberJoined(room, "role-u1"),
		chattest.MessageCreated(room, "role-m1", "hello"),
		chattest.MessageEdited(room, "role-m1", "hello, edited"),
		chattest.MessageCreated(room, "role-m2", "to be deleted"),
		chattest.MessageDeleted(room, "role-m2"),
		chattest.MemberLeft(room, "role-u1"),
		chattest.UserNotification([]string{"role-u1", "role-u2"}, "hi"),
		// The API's: a member who stays.
		chattest.MemberJoined("role-api-room", "role-u3"),
		chattest.MessageCreated("role-api-room", "role-m3", "read me"),
	)
	s.waitCount(60*time.Second, 9, `SELECT count(*) FROM events`)
	s.waitCount(60*time.Second, 0, `SELECT count(*) FROM deliveries`)
	testsupport.WaitFor(t, 30*time.Second, "Pusher to have the room's six events", func() (bool, string) {
		n := len(s.pusher.EventsOn("private-room-" + room))
		return n == 6, fmt.Sprintf("%d events on the room's channel", n)
	})
	if n := s.mustCount(`SELECT count(*) FROM messages WHERE id = 'role-m2' AND content = '' AND deleted_at IS NOT NULL`); n != 1 {
		t.Errorf("the deleted message was not emptied")
	}
	if n := s.mustCount(`SELECT count(*) FROM events WHERE data->>'content' = 'to be deleted'`); n != 0 {
		t.Errorf("the deleted message's text is still in the event store")
	}
	if n := s.mustCount(`SELECT count(*) FROM room_members WHERE room_id = $1`, room); n != 0 {
		t.Errorf("the member who left is still a member")
	}
	if n := topicSize(t, s.brokers, s.dlq); n != 0 {
		t.Errorf("%d messages were dead-lettered", n)
	}
	w.stop()
	if strings.Contains(w.logs.String(), "permission denied") {
		t.Errorf("the worker met a missing grant:\n%s", grepLines(w.logs.String(), "permission denied"))
	}

	checkAPIRole(t, s, roleURL(apiRole))

	// What the role must not do.
	conn, err := pgxConnect(t, runURL)
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		`DELETE FROM events`, `TRUNCATE events`, `DROP TABLE deliveries`, `ALTER TABLE events ADD COLUMN x int`,
		`CREATE TABLE rc_role_probe (id int)`, `DELETE FROM messages`, `UPDATE goose_db_version SET is_applied = false`,
	} {
		if _, err := conn.Exec(ctx, stmt); err == nil || !strings.Contains(err.Error(), "42501") {
			t.Errorf("as the runtime role, %s: %v, want permission denied (SQLSTATE 42501)", stmt, err)
		}
	}
}

// pgxConnect opens one connection to url, closed at the end of the test.
func pgxConnect(t *testing.T, url string) (*pgx.Conn, error) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn, nil
}

// checkAPIRole runs `roomcast api` as the read-only role of apiURL on the
// database the worker filled: it starts (reading goose's version table), a
// member's channel is authorized and the room's events served, a
// non-member is refused; and the role can write no row, read no outbox and
// change no schema.
func checkAPIRole(t *testing.T, s *stack, apiURL string) {
	t.Helper()
	api := s.startAPI(map[string]string{"DATABASE_URL": apiURL})
	api.waitReady()
	member, stranger := apiToken(t, "role-u3"), apiToken(t, "role-u1")
	auth := url.Values{"socket_id": {"123.456"}, "channel_name": {"presence-room-role-api-room"}}
	for _, r := range []struct {
		what, method, path, token string
		form                      url.Values
		want                      int
		body                      string
	}{
		{"a member's presence channel", "POST", "/pusher/auth", member, auth, 200, `"channel_data"`},
		{"a member's catch-up", "GET", "/rooms/role-api-room/events", member, nil, 200, `"content":"read me"`},
		{"a message's whole text", "GET", "/rooms/role-api-room/messages/role-m3", member, nil, 200, `"content":"read me"`},
		{"a user's notifications", "GET", "/users/me/notifications", stranger, nil, 200, `"notifications":[{`},
		{"a member who left", "GET", "/rooms/role-room/events", stranger, nil, 403, `not a member`},
	} {
		code, body, err := apiRequest(api.addr, r.method, r.path, r.token, r.form)
		if err != nil || code != r.want || !strings.Contains(body, r.body) {
			t.Errorf("roomcast api as the read-only role: %s: %d %s (%v), want %d with %s", r.what, code, body, err, r.want, r.body)
		}
	}
	api.stop()
	if strings.Contains(api.logs.String(), "permission denied") {
		t.Errorf("roomcast api met a missing grant:\n%s", grepLines(api.logs.String(), "permission denied"))
	}

	conn, err := pgxConnect(t, apiURL)
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		`INSERT INTO room_members (room_id, user_id) VALUES ('role-api-room', 'intruder')`,
		`DELETE FROM room_members`, `UPDATE messages SET content = 'changed'`, `DELETE FROM messages`,
		`UPDATE rooms SET last_seq = 0`, `DELETE FROM events`, `UPDATE events SET data = '{}'`,
		`SELECT count(*) FROM deliveries`, `DELETE FROM deliveries`, `SELECT nextval('deliveries_id_seq')`,
		`UPDATE goose_db_version SET is_applied = false`, `CREATE TABLE rc_api_probe (id int)`, `DROP TABLE messages`,
	} {
		if _, err := conn.Exec(t.Context(), stmt); err == nil || !strings.Contains(err.Error(), "42501") {
			t.Errorf("as the API's role, %s: %v, want permission denied (SQLSTATE 42501)", stmt, err)
		}
	}
}
