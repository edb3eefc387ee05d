package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/config"

	"github.com/IBM/sarama"

	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/testsupport"
)

func envOf(m map[string]string) config.Getenv { return func(name string) string { return m[name] } }

// runQuick runs a command that must end on its own within timeout.
func runQuick(t *testing.T, timeout time.Duration, args []string, env config.Getenv, stdin io.Reader) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	var stdout, stderr testsupport.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, env, stdin, &stdout, &stderr) }()
	select {
	case err := <-done:
		if ctx.Err() != nil {
			t.Fatalf("roomcast %v ran until its %v deadline (err %v)", args, timeout, err)
		}
		return stdout.String(), stderr.String(), err
	case <-time.After(timeout + 30*time.Second):
		t.Fatalf("roomcast %v did not return within %v", args, timeout+30*time.Second)
		return "", "", nil
	}
}

// validRunEnv is a complete configuration pointing at nothing that answers.
func validRunEnv(t *testing.T) map[string]string {
	return map[string]string{
		"KAFKA_BROKERS":  freeAddr(t),
		"DATABASE_URL":   "postgres://roomcast@" + freeAddr(t) + "/roomcast?sslmode=disable",
		"PUSHER_APP_ID":  "1",
		"PUSHER_KEY":     "k",
		"PUSHER_SECRET":  "s",
		"PUSHER_CLUSTER": "eu",
		"HTTP_ADDR":      freeAddr(t),
	}
}

func TestConfigEveryMissingSettingAtOnce(t *testing.T) {
	t.Parallel()
	_, _, err := runQuick(t, 10*time.Second, []string{"run"}, envOf(nil), nil)
	if err == nil {
		t.Fatal("run with an empty environment succeeded")
	}
	t.Logf("run with an empty environment: %v", err)
	for _, name := range []string{"KAFKA_BROKERS", "DATABASE_URL", "PUSHER_APP_ID", "PUSHER_KEY", "PUSHER_SECRET", "PUSHER_CLUSTER"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s:\n%v", name, err)
		}
	}
}

func TestConfigMalformedSettingIsNamed(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"KAFKA_TLS":            "maybe",
		"PUSHER_USE_TLS":       "sometimes",
		"KAFKA_INITIAL_OFFSET": "middle",
		"SHUTDOWN_TIMEOUT":     "soon",
		"LOG_LEVEL":            "loud",
		"HTTP_ADDR":            "8080",
		"KAFKA_SASL_MECHANISM": "KERBEROS",
		"PUSHER_BATCH_EVENTS":  "11",
		"PUSHER_MAX_IN_FLIGHT": "0",
		"PUSHER_TIMEOUT":       "forever",
		"PUSHER_HOST":          "localhost",
		"DATABASE_MAX_CONNS":   "lots",
		"LOG_FORMAT":           "xml",
		"DELIVERY_RETENTION":   "-1h",
		"KAFKA_CATCH_UP_RATIO": "1",
	}
	for name, value := range cases {
		t.Run(name, func(t *testing.T) {
			env := validRunEnv(t)
			env[name] = value
			_, _, err := runQuick(t, 10*time.Second, []string{"run"}, envOf(env), nil)
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Fatalf("%s=%s: error %v does not name %s", name, value, err, name)
			}
			if errors.Is(err, errUsage) {
				t.Errorf("a configuration error is reported as a usage error: %v", err)
			}
		})
	}
}

func TestConfigDatabasePasswordNotInError(t *testing.T) {
	t.Parallel()
	const pw = "s3cret-pw"
	env := validRunEnv(t)
	env["DATABASE_URL"] = "postgres://roomcast:" + pw + "@" + freeAddr(t) + "/roomcast?sslmode=disable"
	start := time.Now()
	_, stderr, err := runQuick(t, 30*time.Second, []string{"run"}, envOf(env), nil)
	if err == nil {
		t.Fatal("run against a closed Postgres port succeeded")
	}
	t.Logf("error after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if strings.Contains(err.Error(), pw) {
		t.Errorf("the error shows the database password: %v", err)
	}
	if strings.Contains(stderr, pw) {
		t.Errorf("the log shows the database password:\n%s", stderr)
	}
	// The same with a key=value connection string.
	env["DATABASE_URL"] = "host=127.0.0.1 port=" + strings.Split(freeAddr(t), ":")[1] + " user=roomcast password=" + pw + " dbname=roomcast sslmode=disable"
	_, stderr, err = runQuick(t, 30*time.Second, []string{"run"}, envOf(env), nil)
	if err == nil {
		t.Fatal("run against a closed Postgres port succeeded")
	}
	if strings.Contains(err.Error(), pw) || strings.Contains(stderr, pw) {
		t.Errorf("key=value DATABASE_URL: the password shows in the error or log: %v\n%s", err, stderr)
	}
}

// TestSecretsNeverLogged runs a real worker at debug level, with Pusher
// refusing a few calls, and searches its log for the secrets.
func TestSecretsNeverLogged(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	// The test cluster trusts local connections, so a password in the URL is accepted and ignored.
	const dbPassword = "db-pw-7f3a91"
	dbURL := strings.Replace(s.dbURL, "postgres://postgres@", "postgres://postgres:"+dbPassword+"@", 1)
	if dbURL == s.dbURL {
		t.Fatalf("cannot add a password to %s", s.dbURL)
	}
	s.pusher.FailNext(2, 401)
	w := s.startWorker(map[string]string{"LOG_LEVEL": "debug", "DATABASE_URL": dbURL})
	room := "secret-room"
	s.produceEvents(chattest.MemberJoined(room, "u-1"), chattest.MessageCreated(room, "secret-m1", "hi"),
		chattest.MessageEdited(room, "secret-m-unknown", "dead letter"))
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := s.pusher.WaitForEvents(ctx, 2); err != nil {
		t.Fatal(err)
	}
	w.stop()
	logs := w.logs.String()
	if !strings.Contains(logs, "roomcast starting") || !strings.Contains(logs, "401") {
		t.Errorf("the log lacks the start and the refused Pusher calls:\n%s", w.logs.Tail(30))
	}
	for _, secret := range []string{testSecret, dbPassword} {
		if strings.Contains(logs, secret) {
			i := strings.Index(logs, secret)
			t.Errorf("the log contains the secret %q: ...%s...", secret, logs[max(0, i-300):min(len(logs), i+100)])
		}
	}
}

// TestMigrationsBehind: run refuses an un-migrated database and says how to
// fix it; migrate status/up/down report and change the state.
func TestMigrationsBehind(t *testing.T) {
	t.Parallel()
	k := testsupport.Kafka(t, map[string]int32{"chat.events": 12, "chat.events.dlq": 1})
	s := newStackOn(t, k)
	env := s.getenv(map[string]string{"HTTP_ADDR": freeAddr(t)})

	start := time.Now()
	_, _, err := runQuick(t, 30*time.Second, []string{"run"}, env, nil)
	if err == nil || !strings.Contains(err.Error(), "roomcast migrate up") {
		t.Fatalf("run on an empty database: %v; want an error that says to run `roomcast migrate up`", err)
	}
	t.Logf("run on an empty database: %v", err)
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("run took %v to refuse an empty database", took)
	}
	if n := s.mustCount(`SELECT count(*) FROM information_schema.tables WHERE table_name IN ('events','messages','deliveries')`); n != 0 {
		t.Errorf("run created %d roomcast tables on its own", n)
	}

	status := func() string {
		t.Helper()
		out, _, err := runQuick(t, 30*time.Second, []string{"migrate", "status"}, env, nil)
		if err != nil {
			t.Fatalf("migrate status: %v", err)
		}
		return out
	}
	statusLine := func(out string) string {
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "00001") {
				return l
			}
		}
		return ""
	}
	before := status()
	t.Logf("migrate status before up:\n%s", before)
	if l := statusLine(before); !strings.Contains(l, "pending") {
		t.Errorf("migrate status before up: 00001 line %q, want pending", l)
	}
	out, _, err := runQuick(t, 30*time.Second, []string{"migrate", "up"}, env, nil)
	if err != nil || !strings.Contains(out, "applied migration 00001") {
		t.Fatalf("migrate up: %v\n%s", err, out)
	}
	if l := statusLine(status()); !strings.Contains(l, "applied") {
		t.Errorf("migrate status after up: 00001 line %q, want applied", l)
	}
	out, _, err = runQuick(t, 30*time.Second, []string{"migrate", "up"}, env, nil)
	if err != nil || !strings.Contains(out, "up to date") {
		t.Errorf("second migrate up: %v %q, want \"up to date\"", err, out)
	}
	if n := s.mustCount(`SELECT count(*) FROM information_schema.tables WHERE table_name IN ('events','messages','room_members','rooms','deliveries')`); n != 5 {
		t.Errorf("tables after migrate up: %d of 5", n)
	}
	// down rolls back one migration at a time, newest first; 00001 stays
	// applied until the last one.
	versions := 0
	for _, l := range strings.Split(status(), "\n") {
		if len(l) > 5 && strings.Trim(l[:5], "0123456789") == "" {
			versions++
		}
	}
	if versions < 2 {
		t.Fatalf("migrate status lists %d migrations", versions)
	}
	for v := versions; v > 1; v-- {
		out, _, err = runQuick(t, 30*time.Second, []string{"migrate", "down"}, env, nil)
		if want := fmt.Sprintf("rolled back migration %05d", v); err != nil || !strings.Contains(out, want) {
			t.Fatalf("migrate down: %v\n%s\nwant %q", err, out, want)
		}
		if l := statusLine(status()); !strings.Contains(l, "applied") {
			t.Errorf("migrate status after rolling back %05d: 00001 line %q, want still applied", v, l)
		}
	}
	// 00001 drops the event store: refused, saying what it would drop,
	// unless the operator says so.
	if _, err := s.db.Exec(t.Context(), `INSERT INTO events (id, type, source, data, fingerprint, occurred_at) VALUES ('e-1', 'chat.message.created', 'test', '{}', 'f', now())`); err != nil {
		t.Fatal(err)
	}
	out, _, err = runQuick(t, 30*time.Second, []string{"migrate", "down"}, env, nil)
	t.Logf("migrate down at 00001: %v", err)
	if err == nil || errors.Is(err, errUsage) {
		t.Fatalf("migrate down at 00001 without -yes-drop-tables: %v\n%s; want a refusal", err, out)
	}
	for _, want := range []string{"events (1 row): the event store", "messages (0 rows)", "deliveries", "-yes-drop-tables", "Nothing was changed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal does not say %q:\n%v", want, err)
		}
	}
	if n := s.mustCount(`SELECT count(*) FROM events`); n != 1 {
		t.Errorf("events after the refused migrate down: %d rows, want 1", n)
	}
	if l := statusLine(status()); !strings.Contains(l, "applied") {
		t.Errorf("migrate status after the refused down: 00001 line %q, want still applied", l)
	}
	for _, args := range [][]string{{"migrate", "up", "-yes-drop-tables"}, {"migrate", "down", "-yes-drop-table"}, {"migrate", "down", "now"}} {
		if _, _, err := runQuick(t, 30*time.Second, args, env, nil); !errors.Is(err, errUsage) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
	out, _, err = runQuick(t, 30*time.Second, []string{"migrate", "down", "-yes-drop-tables"}, env, nil)
	if err != nil || !strings.Contains(out, "rolled back migration 00001") || !strings.Contains(out, "dropped table events (1 row)") {
		t.Fatalf("migrate down -yes-drop-tables: %v\n%s", err, out)
	}
	if l := statusLine(status()); !strings.Contains(l, "pending") {
		t.Errorf("migrate status after down: 00001 line %q, want pending", l)
	}
	if n := s.mustCount(`SELECT count(*) FROM information_schema.tables WHERE table_name IN ('events','messages','room_members','rooms','deliveries')`); n != 0 {
		t.Errorf("tables after migrate down: %d, want 0", n)
	}
	if _, _, err := runQuick(t, 30*time.Second, []string{"migrate", "sideways"}, env, nil); !errors.Is(err, errUsage) {
		t.Errorf("migrate sideways: %v, want a usage error", err)
	}
}

// TestEmitRejectsBadLines: bad lines are named by number, the others are sent.
func TestEmitRejectsBadLines(t *testing.T) {
	t.Parallel()
	k := testsupport.Kafka(t, map[string]int32{"chat.events": 12, "chat.events.dlq": 1})
	env := envOf(map[string]string{"KAFKA_BROKERS": strings.Join(k.Brokers, ","), "KAFKA_TOPIC": k.Topics["chat.events"]})
	unknown := chattest.MessageCreated("emit-room", "emit-m2", "x")
	unknown.Type = "chat.message.pinned"
	lines := [][]byte{
		chattest.MessageCreated("emit-room", "emit-m1", "one").JSON(),
		[]byte("this is not json"),
		chattest.MemberJoined("emit-room", "u-1").JSON(),
		unknown.JSON(),
		{},
		chattest.UserNotification([]string{"u-1"}, "hi").JSON(),
	}
	emitStart := time.Now()
	stdout, _, err := runQuick(t, 30*time.Second, []string{"emit"}, env, bytes.NewReader(bytes.Join(lines, []byte("\n"))))
	t.Logf("emit took %v", time.Since(emitStart).Round(time.Millisecond))
	if err == nil {
		t.Fatal("emit with bad lines succeeded")
	}
	for _, want := range []string{"line 2", "not JSON", "line 4", "unknown event type"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("emit error does not contain %q:\n%v", want, err)
		}
	}
	for _, not := range []string{"line 1:", "line 3", "line 5", "line 6"} {
		if strings.Contains(err.Error(), not) {
			t.Errorf("emit error names %q, a good or empty line:\n%v", not, err)
		}
	}
	if want := "sent 3 events to " + k.Topics["chat.events"] + ", rejected 2 lines"; !strings.Contains(stdout, want) {
		t.Errorf("emit printed %q, want %q", stdout, want)
	}
	if n := topicSize(t, k.Brokers, k.Topics["chat.events"]); n != 3 {
		t.Errorf("messages in the topic: %d, want 3", n)
	}
	msgs := readTopic(t, k.Brokers, k.Topics["chat.events"], 3, 30*time.Second)
	keys := map[string]int{}
	murmur2 := sarama.NewMurmur2Partitioner(k.Topics["chat.events"])
	for _, m := range msgs {
		keys[string(m.Key)]++
		want, _ := murmur2.Partition(&sarama.ProducerMessage{Key: sarama.ByteEncoder(m.Key)}, 12)
		if m.Partition != want {
			t.Errorf("key %q is in partition %d, murmur2 (the Java client's partitioner) says %d", m.Key, m.Partition, want)
		}
	}
	if keys["emit-room"] != 2 || keys["u-1"] != 1 {
		t.Errorf("keys of the sent events: %v, want emit-room twice and u-1 once", keys)
	}
}

// TestKafkaPasswordNeverShown: with SASL credentials the in-process broker
// does not accept, the worker fails without showing the password.
func TestKafkaPasswordNeverShown(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	const pw = "kafka-pw-5c1e"
	env := s.getenv(map[string]string{
		"HTTP_ADDR": freeAddr(t), "LOG_LEVEL": "debug",
		"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "roomcast", "KAFKA_SASL_PASSWORD": pw,
	})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var logs testsupport.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"run"}, env, nil, io.Discard, &logs) }()
	var err error
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		// Still trying: that is allowed, as long as nothing shows the password.
		cancel()
		err = <-done
	}
	t.Logf("run with SASL against a broker without it: %v", err)
	if err != nil && strings.Contains(err.Error(), pw) {
		t.Errorf("the error shows the Kafka password: %v", err)
	}
	if strings.Contains(logs.String(), pw) {
		t.Errorf("the log shows the Kafka password")
	}
}

// Delivered outbox rows are deleted at once unless DELIVERY_RETENTION keeps
// them for a while.
func TestConfigDeliveryRetention(t *testing.T) {
	t.Parallel()
	for value, want := range map[string]time.Duration{"": 0, "0": 0, "36h": 36 * time.Hour} {
		env := validRunEnv(t)
		if value != "" {
			env["DELIVERY_RETENTION"] = value
		}
		cfg, err := config.Load(envOf(env), config.Kafka, config.Database, config.Pusher, config.HTTP)
		if err != nil {
			t.Fatalf("DELIVERY_RETENTION=%q: %v", value, err)
		}
		if cfg.Retention != want {
			t.Errorf("DELIVERY_RETENTION=%q: retention %v, want %v", value, cfg.Retention, want)
		}
	}
}

// EVENT_MAX_BYTES takes a byte count or KiB/MiB; STALL_AFTER a duration.
// Each has its default, and a bad value is named in the error.
func TestConfigEventMaxBytesAndStallAfter(t *testing.T) {
	t.Parallel()
	load := func(name, value string) (config.Config, error) {
		env := validRunEnv(t)
		if value != "" {
			env[name] = value
		}
		return config.Load(envOf(env), config.Kafka, config.Database, config.Pusher, config.HTTP)
	}
	for value, want := range map[string]int{"": 262144, "1000": 1000, "256KiB": 262144, "512 kib": 524288, "1MiB": 1 << 20, "64 MiB": 64 << 20} {
		cfg, err := load("EVENT_MAX_BYTES", value)
		if err != nil {
			t.Fatalf("EVENT_MAX_BYTES=%q: %v", value, err)
		}
		if cfg.EventMaxBytes != want {
			t.Errorf("EVENT_MAX_BYTES=%q: %d bytes, want %d", value, cfg.EventMaxBytes, want)
		}
	}
	for value, want := range map[string]time.Duration{"": 2 * time.Minute, "90s": 90 * time.Second, "1h": time.Hour} {
		cfg, err := load("STALL_AFTER", value)
		if err != nil {
			t.Fatalf("STALL_AFTER=%q: %v", value, err)
		}
		if cfg.StallAfter != want {
			t.Errorf("STALL_AFTER=%q: %v, want %v", value, cfg.StallAfter, want)
		}
	}
	for name, values := range map[string][]string{
		"EVENT_MAX_BYTES": {"lots", "0", "-1", "1.5MiB", "1GB", "KiB", "65MiB", "99999999999999999999"},
		"STALL_AFTER":     {"never", "0s", "-1m", "120"},
	} {
		for _, value := range values {
			if _, err := load(name, value); err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("%s=%q: error %v does not name %s", name, value, err, name)
			}
		}
	}
}

// TestConfigRefusesCleartextCredentials: SASL PLAIN without TLS and Pusher's
// clusters over plain HTTP are refused, naming the settings, unless allowed
// explicitly; SCRAM, TLS and a Pusher-compatible host of one's own are not.
func TestConfigRefusesCleartextCredentials(t *testing.T) {
	t.Parallel()
	base := map[string]string{
		"KAFKA_BROKERS": "kafka:9092", "DATABASE_URL": "postgres://roomcast@db:5432/roomcast?sslmode=verify-full",
		"PUSHER_APP_ID": "1", "PUSHER_KEY": "k", "PUSHER_SECRET": "s", "PUSHER_CLUSTER": "eu",
		"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "roomcast", "KAFKA_SASL_PASSWORD": "kafka-pw",
	}
	cases := []struct {
		name string
		env  map[string]string
		want []string // in the error; none: accepted
	}{
		{"SASL PLAIN without TLS", map[string]string{"KAFKA_SASL_MECHANISM": "PLAIN"},
			[]string{"KAFKA_SASL_MECHANISM", "KAFKA_TLS", "KAFKA_ALLOW_INSECURE_SASL"}},
		{"SASL PLAIN with KAFKA_TLS=false", map[string]string{"KAFKA_SASL_MECHANISM": "plain", "KAFKA_TLS": "false"},
			[]string{"KAFKA_ALLOW_INSECURE_SASL"}},
		{"SASL PLAIN without TLS, allowed", map[string]string{"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_ALLOW_INSECURE_SASL": "true"}, nil},
		{"SASL PLAIN over TLS", map[string]string{"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_TLS": "true"}, nil},
		{"SCRAM without TLS", map[string]string{"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"}, nil},
		{"Pusher cluster over HTTP", map[string]string{"PUSHER_USE_TLS": "false"},
			[]string{"PUSHER_USE_TLS", "PUSHER_CLUSTER", "PUSHER_ALLOW_INSECURE"}},
		{"Pusher cluster over HTTP, allowed", map[string]string{"PUSHER_USE_TLS": "false", "PUSHER_ALLOW_INSECURE": "true"}, nil},
		{"own Pusher-compatible host over HTTP", map[string]string{"PUSHER_USE_TLS": "false", "PUSHER_HOST": "soketi:6001"}, nil},
		{"a malformed allowance", map[string]string{"KAFKA_ALLOW_INSECURE_SASL": "yes please"}, []string{"KAFKA_ALLOW_INSECURE_SASL"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := maps.Clone(base)
			maps.Copy(env, c.env)
			_, err := config.Load(envOf(env), config.Kafka, config.Database, config.Pusher, config.HTTP)
			switch {
			case len(c.want) == 0 && err != nil:
				t.Errorf("refused: %v", err)
			case len(c.want) > 0 && err == nil:
				t.Errorf("accepted, want an error naming %v", c.want)
			case err != nil:
				for _, w := range c.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("the error does not name %s: %v", w, err)
					}
				}
				if strings.Contains(err.Error(), "kafka-pw") {
					t.Errorf("the error shows the password: %v", err)
				}
			}
		})
	}
}
