package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/pusher/pusher-http-go/v5"
	"gorm.io/gorm"

	"github.com/roomcast/roomcast/api"
	"github.com/roomcast/roomcast/config"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/feed"
	"github.com/roomcast/roomcast/internal/soketi"
	"github.com/roomcast/roomcast/internal/testsupport"
	"github.com/roomcast/roomcast/worker"
)

// The identity provider the API trusts in these tests: HS256 tokens
// (API_JWT_SECRET wants 32 bytes or more).
const (
	jwtSecret   = "e2e-jwt-secret-4c1d9a7f2b83e6a05d17"
	jwtIssuer   = "https://id.example.test"
	jwtAudience = "roomcast"
)

// stack is roomcast as a browser meets it: Kafka and Postgres, the worker
// sending to soketi through a gate that can lose calls, the API, and a
// Node process whose users run the client library.
type stack struct {
	t        *testing.T
	db       *gorm.DB
	soketi   *soketi.Server
	gate     *gate
	api      string // the API's base URL
	producer *feed.Producer
}

func newStack(t *testing.T) *stack {
	t.Helper()
	_, err := os.Stat(filepath.Join(soketi.ClientDir(t), "dist", "index.js"))
	testsupport.Require(t, err == nil, "the client library is not built: run (cd clients/js && npm ci && npm run build)")
	sok := soketi.Start(t, soketi.Config{})
	k := testsupport.Kafka(t, map[string]int32{"chat.events": 4, "chat.events.dlq": 1})
	db, dbURL := testsupport.Database(t, 4)
	g := newGate(t, sok.Host())
	env := map[string]string{
		"KAFKA_BROKERS":        strings.Join(k.Brokers, ","),
		"KAFKA_TOPIC":          k.Topics["chat.events"],
		"KAFKA_DLQ_TOPIC":      k.Topics["chat.events.dlq"],
		"KAFKA_CONSUMER_GROUP": "roomcast-e2e",
		"DATABASE_URL":         dbURL,
		"PUSHER_APP_ID":        sok.AppID,
		"PUSHER_KEY":           sok.Key,
		"PUSHER_SECRET":        sok.Secret,
		"PUSHER_HOST":          g.Host(),
		"PUSHER_USE_TLS":       "false",
		"PUSHER_TIMEOUT":       "3s",
		"HTTP_ADDR":            "127.0.0.1:0",
		"SHUTDOWN_TIMEOUT":     "20s",
	}
	cfg, err := config.Load(func(name string) string { return env[name] }, config.Kafka, config.Database, config.Pusher, config.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	runWorker(t, cfg)
	producer, err := feed.NewProducer(cfg.Kafka, cfg.Topic)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = producer.Close() })

	signer := &pusher.Client{AppID: sok.AppID, Key: sok.Key, Secret: sok.Secret, Host: sok.Host(),
		HTTPClient: &http.Client{Timeout: 5 * time.Second}}
	identity := api.NewSecretIdentity([]byte(jwtSecret), api.JWTSettings{Issuer: jwtIssuer, Audiences: []string{jwtAudience}})
	srv := httptest.NewServer(api.New(api.Config{DB: db, Pusher: signer, Identity: identity}).Handler())
	t.Cleanup(srv.Close)
	return &stack{t: t, db: db, soketi: sok, gate: g, api: srv.URL, producer: producer}
}

// runWorker runs `roomcast run` in process until the test ends.
func runWorker(t *testing.T, cfg config.Config) {
	t.Helper()
	logs := &testsupport.SyncBuffer{}
	w, err := worker.New(t.Context(), cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatalf("worker: %v\n%s", err, logs.Tail(30))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("worker: %v\n%s", err, logs.Tail(30))
			}
		case <-time.After(45 * time.Second):
			t.Errorf("worker did not stop within 45s")
		}
	})
	select {
	case <-w.Started():
	case err := <-done:
		t.Fatalf("worker exited at start: %v\n%s", err, logs.Tail(30))
	case <-time.After(60 * time.Second):
		t.Fatalf("worker did not start within 60s\n%s", logs.Tail(30))
	}
}

// send produces events to the topic, keyed as the contract says.
func (s *stack) send(events ...*chattest.Event) {
	s.t.Helper()
	for _, e := range events {
		if err := s.producer.Add(e.Key(), e.JSON()); err != nil {
			s.t.Fatal(err)
		}
	}
	if err := s.producer.Flush(); err != nil {
		s.t.Fatal(err)
	}
}

// waitProjected waits until room's last seq is at least seq.
func (s *stack) waitProjected(room string, seq int64) {
	s.t.Helper()
	waitFor(s.t, fmt.Sprintf("room %s to reach seq %d", room, seq), func() (bool, string) {
		var last int64
		err := s.db.Raw("SELECT coalesce(max(last_seq), 0) FROM rooms WHERE room_id = ?", room).Scan(&last).Error
		return err == nil && last >= seq, fmt.Sprintf("last seq %d, %v", last, err)
	})
}

// token is a bearer JWT for user from the identity provider the API trusts.
func token(t *testing.T, user string) string {
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": user, "iss": jwtIssuer, "aud": jwtAudience, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}).SignedString([]byte(jwtSecret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// browser starts clients/js/test/e2e.mjs for users (each with a token).
func (s *stack) browser(users ...string) *browser {
	s.t.Helper()
	tokens := map[string]string{}
	for _, u := range users {
		tokens[u] = token(s.t, u)
	}
	tj, _ := json.Marshal(tokens)
	js := soketi.RunScript(s.t, "test/e2e.mjs",
		"API_BASE="+s.api, "PUSHER_KEY="+s.soketi.Key, "SOKETI_PORT="+strconv.Itoa(s.soketi.Port), "TOKENS="+string(tj))
	js.Await(s.t, 30*time.Second, "started", nil)
	return &browser{t: s.t, js: js}
}

// roomFeed is what the API's events endpoint serves user for room now.
func (s *stack) roomFeed(user, room string) map[int64]json.RawMessage {
	s.t.Helper()
	out := map[int64]json.RawMessage{}
	after := int64(0)
	for {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/rooms/%s/events?after_seq=%d&limit=100", s.api, room, after), nil)
		req.Header.Set("Authorization", "Bearer "+token(s.t, user))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			s.t.Fatal(err)
		}
		var page struct {
			More   bool
			Events []struct {
				Seq  int64
				Data json.RawMessage
			}
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			s.t.Fatalf("events of %s for %s: %d %v", room, user, resp.StatusCode, err)
		}
		for _, e := range page.Events {
			out[e.Seq] = e.Data
			after = e.Seq
		}
		if !page.More || len(page.Events) == 0 {
			return out
		}
	}
}

func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	testsupport.WaitFor(t, 60*time.Second, what, cond)
}
