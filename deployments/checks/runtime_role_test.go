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
// the event store's history.
func TestRuntimeRole(t *testing.T) {
	t.Parallel()
	s := newStack(t, roomcastBinary(t)) // migrated by the test cluster's owner role
	sqlFile, err := os.ReadFile(filepath.Join("..", "..", "deployments", "postgres", "runtime-role.sql"))
	if err != nil {
		t.Fatal(err)
	}
	// Roles belong to the cluster, which the package's tests share.
	role := "rc_run_" + strings.ReplaceAll(strings.ToLower(t.Name()), "/", "_") + fmt.Sprint(time.Now().UnixNano()%1e6)
	ctx := t.Context()
	if _, err := s.db.Exec(ctx, `CREATE ROLE `+role+` LOGIN`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// After the worker stopped (cleanups run last first): its privileges,
		// then the role.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := s.db.Exec(ctx, `DROP OWNED BY `+role); err != nil {
			t.Logf("drop owned by %s: %v", role, err)
		}
		if _, err := s.db.Exec(ctx, `DROP ROLE `+role); err != nil {
			t.Logf("drop role %s: %v", role, err)
		}
	})
	if _, err := s.db.Exec(ctx, strings.ReplaceAll(string(sqlFile), "roomcast_run", role)); err != nil {
		t.Fatalf("deployments/postgres/runtime-role.sql: %v", err)
	}
	u, err := url.Parse(s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role) // the test cluster trusts local connections
	runURL := u.String()

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
	)
	s.waitCount(60*time.Second, 7, `SELECT count(*) FROM events`)
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
