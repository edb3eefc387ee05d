package soketi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/pusher/pusher-http-go/v5"

	"github.com/roomcast/roomcast/internal/soketi"
)

// publisher is pusher-http-go configured for s, as the worker configures it
// with PUSHER_HOST and PUSHER_USE_TLS=false.
func publisher(s *soketi.Server, secret string) *pusher.Client {
	return &pusher.Client{AppID: s.AppID, Key: s.Key, Secret: secret, Host: s.Host(), Secure: false,
		HTTPClient: &http.Client{Timeout: 10 * time.Second}}
}

// authEndpoint answers pusher-js's channel authorization with
// pusher-http-go's AuthorizePrivateChannel, signed with c's secret.
func authEndpoint(t *testing.T, c *pusher.Client) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		auth, err := c.AuthorizePrivateChannel(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(auth)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func smoke(t *testing.T, s *soketi.Server, auth string, channels string) *soketi.Script {
	return soketi.RunScript(t, "test/smoke.mjs",
		"PUSHER_KEY="+s.Key, "SOKETI_PORT="+strconv.Itoa(s.Port), "AUTH_ENDPOINT="+auth, "CHANNELS="+channels)
}

func channelIs(name string) func(json.RawMessage) bool {
	return func(raw json.RawMessage) bool {
		var l struct{ Channel string }
		return json.Unmarshal(raw, &l) == nil && l.Channel == name
	}
}

func TestPusherJSReceivesWhatPusherHTTPGoTriggersOnPrivateChannels(t *testing.T) {
	s := soketi.Start(t, soketi.Config{})
	pub := publisher(s, s.Secret)
	js := smoke(t, s, authEndpoint(t, pub), "public-room,private-room-42")
	js.Await(t, 30*time.Second, "subscribed", channelIs("public-room"))
	js.Await(t, 30*time.Second, "subscribed", channelIs("private-room-42"))

	if err := pub.Trigger("private-room-42", "new-message", map[string]any{"id": "m-1", "seq": 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.TriggerBatch([]pusher.Event{{Channel: "public-room", Name: "user-joined", Data: `{"seq":2}`}}); err != nil {
		t.Fatal(err)
	}
	got := js.Await(t, 30*time.Second, "event", channelIs("private-room-42"))
	var ev struct {
		Event string
		Data  struct {
			ID  string
			Seq int
		}
	}
	if err := json.Unmarshal(got, &ev); err != nil || ev.Event != "new-message" || ev.Data.ID != "m-1" || ev.Data.Seq != 1 {
		t.Fatalf("private event = %s (%v)", got, err)
	}
	js.Await(t, 30*time.Second, "event", channelIs("public-room"))
}

func TestSoketiRefusesAChannelAuthorizationSignedWithAnotherSecret(t *testing.T) {
	s := soketi.Start(t, soketi.Config{})
	forger := publisher(s, "not-the-app-secret")
	js := smoke(t, s, authEndpoint(t, forger), "public-room,private-room-42")
	js.Await(t, 30*time.Second, "subscribed", channelIs("public-room"))
	js.Await(t, 30*time.Second, "refused", channelIs("private-room-42"))
	for _, l := range js.Lines() {
		if l.Type == "subscribed" && channelIs("private-room-42")(l.Raw) {
			t.Fatalf("soketi accepted a forged authorization:\n%s", js.Transcript())
		}
	}
}

func TestRestartServesAgainOnTheSamePort(t *testing.T) {
	s := soketi.Start(t, soketi.Config{})
	port := s.Port
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := publisher(s, s.Secret).Trigger("public-room", "x", "{}"); err == nil {
		t.Fatal("a trigger succeeded while soketi was stopped")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if s.Port != port {
		t.Fatalf("port %d after restart, was %d", s.Port, port)
	}
	if err := publisher(s, s.Secret).Trigger("public-room", "x", "{}"); err != nil {
		t.Fatalf("trigger after restart: %v", err)
	}
}
