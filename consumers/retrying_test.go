package consumers_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/consumers"
	"github.com/roomcast/roomcast/internal/testsupport"
)

// While an event fails transiently: roomcast_events_retrying and
// roomcast_retry_oldest_seconds show it, counted from its first failure
// across nacks, the retry stall is reported with a short cause free of the
// DSN, and the log has no ERROR line and only a warning; once it succeeds
// all of that clears, with one line saying so.
func TestRetryIsReportedFromItsFirstFailure(t *testing.T) {
	env := newBatchEnv(t, 1)
	records, _ := someRooms([]string{"room-a", "room-b"}, 5)
	flaky := &flakyProjector{id: records[2].id, failures: -1}
	if err := env.produce(records); err != nil {
		t.Fatal(err)
	}
	n := env.startConsumer(func(next consumers.Projector) consumers.Projector { flaky.next = next; return flaky },
		func(c *consumers.Config) {
			c.RetryMaxInterval = 20 * time.Millisecond
			c.StallAfter = 50 * time.Millisecond
		})

	// 1 attempt and 8 retries per delivery: the 12th attempt is in a second delivery.
	batchWaitFor(t, 60*time.Second, "the flaky event to be nacked and delivered again", func() bool {
		_, a := flaky.attempt(0)
		return a >= 12 && len(n.problems()) > 0
	}, func() string {
		_, a := flaky.attempt(0)
		return fmt.Sprintf("%d attempts, problems %q", a, n.problems())
	})
	second, _ := flaky.attempt(1)
	since := time.Since(second) // the oldest failure is older than this, unless a nack reset it
	if got := n.metric(t, "roomcast_retry_oldest_seconds"); got < since.Seconds() {
		t.Errorf("roomcast_retry_oldest_seconds = %v, want at least %v: counted from the first failure, across nacks", got, since.Seconds())
	}
	if got := n.metric(t, "roomcast_events_retrying"); got != 1 {
		t.Errorf("roomcast_events_retrying = %v, want 1", got)
	}
	if got := n.metric(t, "roomcast_consumer_stalled", "cause", "retry"); got != 1 {
		t.Errorf("roomcast_consumer_stalled{cause=retry} = %v, want 1", got)
	}
	// The partition stall (the event holds its partition's position) may be listed too.
	p := linesWith(n.problems(), "retried")
	if len(p) != 1 || !strings.HasPrefix(p[0], "1 event failing and retried: postgres unavailable: connection refused (for ") {
		t.Errorf("problems %q, want the retry and its cause", n.problems())
	}
	for _, secret := range []string{"alice", "chat", "db.internal", "10.0.0.5"} {
		if strings.Contains(strings.Join(p, "\n"), secret) {
			t.Errorf("problems %q show %q", p, secret)
		}
	}
	if errs := n.logs.lines("ERROR"); len(errs) > 0 {
		t.Errorf("%d ERROR lines for one event retried, want none:\n%s", len(errs), strings.Join(errs[:min(len(errs), 5)], "\n"))
	}
	if warns := n.logs.lines("WARN"); len(warns) != 1 {
		t.Errorf("%d warnings for one event retried, want 1:\n%s", len(warns), strings.Join(warns[:min(len(warns), 5)], "\n"))
	}

	flaky.release()
	batchWaitFor(t, 60*time.Second, "every event projected and the retry cleared", func() bool {
		return env.countEvents() == len(records) && n.metric(t, "roomcast_events_retrying") == 0 && len(n.problems()) == 0
	}, func() string {
		return fmt.Sprintf("%d of %d projected, retrying %v, problems %q", env.countEvents(), len(records), n.metric(t, "roomcast_events_retrying"), n.problems())
	})
	if got := n.metric(t, "roomcast_retry_oldest_seconds"); got != 0 {
		t.Errorf("roomcast_retry_oldest_seconds = %v once cleared, want 0", got)
	}
	if got := n.metric(t, "roomcast_consumer_stalled", "cause", "retry"); got != 0 {
		t.Errorf("roomcast_consumer_stalled{cause=retry} = %v once cleared, want 0", got)
	}
	if infos := n.logs.lines("INFO"); !strings.Contains(strings.Join(infos, "\n"), "events no longer failing") {
		t.Errorf("no line saying the failures cleared:\n%s", strings.Join(infos, "\n"))
	}
	if got := n.metric(t, "roomcast_events_consumed_total"); got != float64(len(records)) {
		t.Errorf("roomcast_events_consumed_total = %v, want %d", got, len(records))
	}
}

// Postgres killed while events stream in: the retries show in the metrics
// and as a retry stall whose cause names neither host, port, user nor
// database; the log holds a handful of lines instead of an ERROR per event
// per attempt; once Postgres is back everything is projected and the stall
// clears. It restarts the cluster every test of the package shares.
func TestPostgresDownIsReportedInAFewLines(t *testing.T) {
	pg := testsupport.PostgresServer(t)
	env := newBatchEnv(t, 2)
	// The shared cluster commits asynchronously (speed), so a crash would
	// lose commits Postgres acknowledged: this database commits durably.
	u, err := url.Parse(env.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	dbName := strings.TrimPrefix(u.Path, "/")
	if err := env.db.Exec(`ALTER DATABASE "` + dbName + `" SET synchronous_commit = on`).Error; err != nil {
		t.Fatal(err)
	}
	valid := map[string]string{}
	rooms := batchRooms(4)
	records := interleave(rooms, 250, valid)
	half := len(records) / 2
	if err := env.produce(records[:half]); err != nil {
		t.Fatal(err)
	}
	n := env.startConsumer(nil, func(c *consumers.Config) { c.StallAfter = 200 * time.Millisecond })
	env.waitProjected(half, 0, 60*time.Second)

	if err := pg.Kill(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = pg.Restart(context.Background())
		}
	})
	if err := env.produce(records[half:]); err != nil {
		t.Fatal(err)
	}
	batchWaitFor(t, 60*time.Second, "the retries reported as a stall", func() bool {
		return n.metric(t, "roomcast_events_retrying") > 0 && n.metric(t, "roomcast_consumer_stalled", "cause", "retry") == 1 && len(n.problems()) > 0
	}, func() string {
		return fmt.Sprintf("retrying %v, problems %q", n.metric(t, "roomcast_events_retrying"), n.problems())
	})
	problems := strings.Join(n.problems(), "\n")
	t.Logf("postgres down %v: retrying %v, oldest %vs; problems: %s", time.Since(down).Round(time.Millisecond),
		n.metric(t, "roomcast_events_retrying"), n.metric(t, "roomcast_retry_oldest_seconds"), problems)
	if !strings.Contains(problems, "postgres unavailable") {
		t.Errorf("problems %q do not say that Postgres is unavailable", problems)
	}
	secrets := []string{u.Hostname(), u.Port(), dbName, "user="}
	if user := u.User.Username(); user != "postgres" { // "postgres unavailable" is meant
		secrets = append(secrets, user)
	}
	for _, secret := range secrets {
		if strings.Contains(problems, secret) {
			t.Errorf("problems %q show %q from the DSN", problems, secret)
		}
	}

	if err := pg.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	restarted = true
	// The test's own pooled connections died with the server: drop them.
	if sqlDB, err := env.db.DB(); err == nil {
		sqlDB.SetMaxIdleConns(0)
		sqlDB.SetMaxIdleConns(2)
	}
	batchWaitFor(t, 120*time.Second, "everything projected and the retries cleared", func() bool {
		stored, err := env.tryCountEvents()
		return err == nil && stored == len(records) && n.metric(t, "roomcast_events_retrying") == 0 && len(n.problems()) == 0
	}, func() string {
		return fmt.Sprintf("retrying %v, problems %q", n.metric(t, "roomcast_events_retrying"), n.problems())
	})
	env.checkRooms(validOrder(env.kafkaOrder(), valid), rooms)
	env.dlqEmpty()
	warns, errs := n.logs.lines("WARN"), n.logs.lines("ERROR")
	t.Logf("log while Postgres was down: %d ERROR, %d WARN lines:\n%s", len(errs), len(warns), strings.Join(warns, "\n"))
	if len(errs) > 0 {
		t.Errorf("%d ERROR lines, want none (retries are reported by cause):\n%s", len(errs), strings.Join(errs[:min(len(errs), 5)], "\n"))
	}
	if len(warns) > 8 {
		t.Errorf("%d warnings, want a few", len(warns))
	}
	if infos := n.logs.lines("INFO"); !strings.Contains(strings.Join(infos, "\n"), "events no longer failing") {
		t.Errorf("no line saying the failures cleared")
	}
}
