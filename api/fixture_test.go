package api_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/pusher/pusher-http-go/v5"
	"gorm.io/gorm"

	"github.com/roomcast/roomcast/api"
	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/testsupport"
	"github.com/roomcast/roomcast/projections"
)

const (
	pusherKey    = "app-key"
	pusherSecret = "app-secret-never-logged"
)

// fixture is roomcast api on a fresh database, with the worker's projector
// to change room membership exactly as events do.
type fixture struct {
	db        *gorm.DB
	projector *projections.Projector
	pusher    *pusher.Client
	server    *httptest.Server
	registry  *prometheus.Registry
	logs      *testsupport.SyncBuffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db, _ := testsupport.Database(t, 4)
	f := &fixture{
		db:        db,
		projector: projections.NewProjector(db, nil, prometheus.NewRegistry()),
		pusher:    &pusher.Client{AppID: "1", Key: pusherKey, Secret: pusherSecret},
		registry:  prometheus.NewRegistry(),
		logs:      &testsupport.SyncBuffer{},
	}
	srv := api.New(api.Config{
		DB: db, Pusher: f.pusher, Registry: f.registry,
		Identity: api.NewSecretIdentity(testSecret, api.JWTSettings{}),
		Log:      slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	f.server = httptest.NewServer(srv.Handler())
	t.Cleanup(f.server.Close)
	return f
}

// project applies events as the worker does, one batch per event.
func (f *fixture) project(t *testing.T, events ...*chattest.Event) {
	t.Helper()
	for _, e := range events {
		results, err := f.projector.ProjectBatch(context.Background(), []projections.Item{{Env: e.Envelope(t), Origin: projections.Origin{Partition: -1}}})
		if err != nil {
			t.Fatal(err)
		}
		if results[0].Err != nil {
			t.Fatal(results[0].Err)
		}
	}
}

// token is a bearer token of user.
func token(t *testing.T, user string) string {
	return hs256(t, testSecret, claims(user, "iss", nil, "aud", nil))
}

// answer is an HTTP answer: status and body.
type answer struct {
	status int
	body   string
	header http.Header
}

// post sends body to path as user ("" for no token) with contentType.
func (f *fixture) post(t *testing.T, path, user, contentType, body string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.server.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+token(t, user))
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{status: resp.StatusCode, body: string(b), header: resp.Header}
}

// authorize asks POST /pusher/auth as pusher-js does: a form body.
func (f *fixture) authorize(t *testing.T, user, socketID, channel string) answer {
	t.Helper()
	return f.post(t, "/pusher/auth", user, "application/x-www-form-urlencoded",
		url.Values{"socket_id": {socketID}, "channel_name": {channel}}.Encode())
}

// channelAuth is the JSON body of a channel authorization.
type channelAuth struct {
	Auth        string `json:"auth"`
	ChannelData string `json:"channel_data"`
}

// verifyChannelAuth checks an authorization as Pusher does: auth is
// key:hex(HMAC-SHA256(secret, socket_id:channel_name[:channel_data])),
// recomputed here from the secret. It returns the channel_data.
func verifyChannelAuth(t *testing.T, a answer, socketID, channel string) string {
	t.Helper()
	if a.status != http.StatusOK {
		t.Fatalf("authorization of %q: %d %s, want 200", channel, a.status, a.body)
	}
	var got channelAuth
	if err := json.Unmarshal([]byte(a.body), &got); err != nil {
		t.Fatalf("authorization of %q: %v in %s", channel, err, a.body)
	}
	signed := socketID + ":" + channel
	if got.ChannelData != "" {
		signed += ":" + got.ChannelData
	}
	if want := pusherKey + ":" + hmacHex(signed); got.Auth != want {
		t.Errorf("authorization of %q: auth %q, want %q (HMAC of %q)", channel, got.Auth, want, signed)
	}
	return got.ChannelData
}

func hmacHex(s string) string {
	mac := hmac.New(sha256.New, []byte(pusherSecret))
	mac.Write([]byte(s))
	return hex.EncodeToString(mac.Sum(nil))
}

// errorReason is the reason of a JSON error answer (fails on another body).
func errorReason(t *testing.T, a answer) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(a.body), &e); err != nil || e.Error == "" {
		t.Errorf("error answer %d %q is not JSON {\"error\": reason}", a.status, a.body)
	}
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error answer's Content-Type %q, want application/json", ct)
	}
	return e.Error
}

// member is chat.member.joined of user in room with a name and avatar
// (nil: none).
func member(room, user, name string, avatar any) *chattest.Event {
	return chattest.MemberJoined(room, user).With("userName", name).With("userAvatar", avatar)
}
