package testsupport_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/roomcast/roomcast/internal/localstack"
	"github.com/roomcast/roomcast/internal/testsupport"
)

func TestMain(m *testing.M) { testsupport.Main(m) }

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// checkDistinctEmptyUsable gets two databases and checks they are separate,
// empty and writable.
func checkDistinctEmptyUsable(t *testing.T) {
	began := time.Now()
	a := testsupport.Postgres(t)
	t.Logf("first database ready in %v", time.Since(began).Round(time.Millisecond))
	began = time.Now()
	b := testsupport.Postgres(t)
	t.Logf("second database ready in %v", time.Since(began).Round(time.Millisecond))
	if a == b {
		t.Fatalf("two calls returned the same database %s", a)
	}
	ca, cb := connect(t, a), connect(t, b)

	var nameA, nameB string
	if err := ca.QueryRow(t.Context(), "SELECT current_database()").Scan(&nameA); err != nil {
		t.Fatal(err)
	}
	if err := cb.QueryRow(t.Context(), "SELECT current_database()").Scan(&nameB); err != nil {
		t.Fatal(err)
	}
	if nameA == nameB || !strings.HasPrefix(nameA, "rc_test_") {
		t.Fatalf("databases %q and %q: want two distinct rc_test_ databases", nameA, nameB)
	}
	for _, c := range []*pgx.Conn{ca, cb} {
		var tables int
		err := c.QueryRow(t.Context(), "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')").Scan(&tables)
		if err != nil {
			t.Fatal(err)
		}
		if tables != 0 {
			t.Fatalf("a fresh database has %d tables", tables)
		}
	}

	if _, err := ca.Exec(t.Context(), "CREATE TABLE messages (id text PRIMARY KEY, body text NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Exec(t.Context(), "INSERT INTO messages VALUES ('m-1', 'hello')"); err != nil {
		t.Fatal(err)
	}
	var body string
	if err := ca.QueryRow(t.Context(), "SELECT body FROM messages WHERE id = 'm-1'").Scan(&body); err != nil || body != "hello" {
		t.Fatalf("read back: %q, %v", body, err)
	}
	if _, err := cb.Exec(t.Context(), "SELECT 1 FROM messages"); err == nil {
		t.Fatal("a table created in one test database is visible in the other")
	}
}

func TestPostgresDatabasesAreDistinctEmptyAndUsable(t *testing.T) {
	checkDistinctEmptyUsable(t)
}

func TestPostgresDatabaseDroppedAfterTest(t *testing.T) {
	var url string
	t.Run("user", func(t *testing.T) {
		url = testsupport.Postgres(t)
		connect(t, url) // left open: the drop must still succeed
	})
	conn, err := pgx.Connect(t.Context(), url)
	if err == nil {
		conn.Close(context.Background())
		t.Fatalf("database %s still exists after its test ended", url)
	}
}

func TestPostgresFromTestDatabaseURL(t *testing.T) {
	// Point TEST_DATABASE_URL at a server of our own to exercise that path.
	ext, err := localstack.StartPostgres(t.Context(), localstack.PostgresConfig{Settings: map[string]string{"fsync": "off"}})
	if errors.Is(err, localstack.ErrPostgresNotInstalled) {
		testsupport.Require(t, false, err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ext.Stop() })
	t.Setenv("TEST_DATABASE_URL", ext.URL("postgres"))

	checkDistinctEmptyUsable(t)
	t.Run("PostgresServer skips", func(t *testing.T) {
		t.Setenv("CI", "")
		testsupport.PostgresServer(t)
		t.Fatal("PostgresServer did not skip with an external server")
	})
}

func TestPostgresServerRestart(t *testing.T) {
	url := testsupport.Postgres(t)
	pool, err := pgxpool.New(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(t.Context(), "CREATE TABLE t (id int)"); err != nil {
		t.Fatal(err)
	}

	if err := testsupport.PostgresServer(t).Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The pool's old connections are dead; a retry on a new one works.
	var lastErr error
	for range 3 {
		if _, lastErr = pool.Exec(t.Context(), "INSERT INTO t VALUES (1)"); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("insert after restart: %v", lastErr)
	}
}

// fakeTB records what Require does without ending the calling test.
type fakeTB struct {
	testing.TB
	skipped, failed bool
}

func (f *fakeTB) Helper()               {}
func (f *fakeTB) Skip(...any)           { f.skipped = true }
func (f *fakeTB) Fatalf(string, ...any) { f.failed = true }

func TestRequire(t *testing.T) {
	for _, tc := range []struct {
		name, ci           string
		ok                 bool
		wantSkip, wantFail bool
	}{
		{name: "satisfied", ci: "true", ok: true},
		{name: "missing locally skips", ci: "", wantSkip: true},
		{name: "missing in CI fails", ci: "true", wantFail: true},
		{name: "CI=false skips", ci: "false", wantSkip: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			f := &fakeTB{}
			testsupport.Require(f, tc.ok, "needs something")
			if f.skipped != tc.wantSkip || f.failed != tc.wantFail {
				t.Fatalf("skipped=%v failed=%v, want skipped=%v failed=%v", f.skipped, f.failed, tc.wantSkip, tc.wantFail)
			}
		})
	}
}

// roundTrip produces n keyed messages to topic and reads them back with a
// consumer group from the oldest offset.
func roundTrip(t *testing.T, env testsupport.KafkaEnv, topic string, n int) {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest

	p, err := sarama.NewSyncProducer(env.Brokers, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		_, _, err := p.SendMessage(&sarama.ProducerMessage{
			Topic: topic,
			Key:   sarama.StringEncoder("room-" + strconv.Itoa(i%5)),
			Value: sarama.StringEncoder(fmt.Sprintf("event-%d", i)),
		})
		if err != nil {
			t.Fatalf("send %d to %s: %v", i, topic, err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	cg, err := sarama.NewConsumerGroup(env.Brokers, "testsupport-"+strings.ReplaceAll(t.Name(), "/", "-"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	h := &handler{seen: map[string]bool{}, want: n, done: cancel}
	for ctx.Err() == nil {
		if err := cg.Consume(ctx, []string{topic}, h); err != nil {
			t.Fatalf("consume %s: %v", topic, err)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.seen) != n {
		t.Fatalf("consumed %d distinct messages from %s, want %d", len(h.seen), topic, n)
	}
}

type handler struct {
	mu   sync.Mutex
	seen map[string]bool
	want int
	done context.CancelFunc
}

func (*handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (*handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *handler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				return nil
			}
			s.MarkMessage(m, "")
			h.mu.Lock()
			h.seen[string(m.Value)] = true
			if len(h.seen) >= h.want {
				h.done()
			}
			h.mu.Unlock()
		case <-s.Context().Done():
			return nil
		}
	}
}

func TestKafkaRoundTrip(t *testing.T) {
	env := testsupport.Kafka(t, map[string]int32{"chat.events": 6, "chat.events.dlq": 1})
	if env.Topics["chat.events"] != "chat.events" || env.Topics["chat.events.dlq"] != "chat.events.dlq" {
		t.Fatalf("in-process broker renamed topics: %v", env.Topics)
	}
	roundTrip(t, env, env.Topics["chat.events"], 50)
	roundTrip(t, env, env.Topics["chat.events.dlq"], 3)
}

func TestKafkaFromKafkaBrokers(t *testing.T) {
	// Point KAFKA_BROKERS at a broker of our own to exercise that path.
	k, err := localstack.StartKafka(localstack.KafkaConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	t.Setenv("KAFKA_BROKERS", strings.Join(k.Brokers(), ", "))

	var actual string
	t.Run("user", func(t *testing.T) {
		env := testsupport.Kafka(t, map[string]int32{"chat.events": 4})
		actual = env.Topics["chat.events"]
		if !strings.HasPrefix(actual, "chat.events.") {
			t.Fatalf("topic chat.events was created as %q, want a unique chat.events.<suffix>", actual)
		}
		if n := len(k.Cluster().PartitionInfos(actual)); n != 4 {
			t.Fatalf("%s has %d partitions, want 4", actual, n)
		}
		roundTrip(t, env, actual, 20)
	})
	if k.Cluster().TopicInfo(actual) != nil {
		t.Fatalf("topic %s still exists after its test ended", actual)
	}
}

func TestPostgresParallel(t *testing.T) {
	for i := range 8 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			conn := connect(t, testsupport.Postgres(t))
			if _, err := conn.Exec(t.Context(), "CREATE TABLE t (id int)"); err != nil {
				t.Fatal(err)
			}
		})
	}
}
