package publishers_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/internal/testsupport"

	"github.com/roomcast/roomcast/internal/chattest"
	"github.com/roomcast/roomcast/internal/fakepusher"
	"github.com/roomcast/roomcast/publishers"
)

// What pusher-http-go signs a request with, which must not leave the process
// in roomcast's error text: its network errors (*url.Error) carry the
// request URL with the query, and Pusher's 401 answers quote the string it
// signs. Neither may reach the outbox (deliveries.last_error, read by
// anyone with access to the database), the logs or Problems().
func TestPusherErrorTextCarriesNoSignedURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		client func(f *fixture) publishers.Pusher
		want   string // what the error text still says
	}{
		{"connection refused", func(f *fixture) publishers.Pusher {
			gone, err := fakepusher.Start(fakepusher.Config{AppID: appID, Key: appKey, Secret: appSecret})
			if err != nil {
				t.Fatal(err)
			}
			host := gone.Host()
			_ = gone.Close()
			return publishers.NewClient(publishers.ClientConfig{AppID: appID, Key: appKey, Secret: appSecret, Host: host})
		}, "/apps/" + appID + "/batch_events"},
		{"invalid signature", func(f *fixture) publishers.Pusher {
			return publishers.NewClient(publishers.ClientConfig{AppID: appID, Key: appKey, Secret: "not-the-secret", Host: f.srv.Host()})
		}, "401"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newIdleFixture(t)
			var logs testsupport.SyncBuffer
			cfg := dispatcherConfig
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			cfg.StallAfter = 50 * time.Millisecond // Problems() reports the failure soon
			f.useConfig(tc.client(f), cfg)
			e := chattest.MessageCreated("room-r", "r-1", "hello")
			f.project(e)
			f.start()
			var lastError string
			f.eventually("a failure recorded in the outbox", func() bool {
				rows := f.deliveries(e.ID)
				if len(rows) == 1 && rows[0].LastError != nil {
					lastError = *rows[0].LastError
				}
				return lastError != ""
			})
			f.eventually("Problems() to report the failure", func() bool { return len(f.dispatcher.Problems()) > 0 })
			problems := strings.Join(f.dispatcher.Problems(), "\n")
			t.Logf("last_error: %s\nproblems: %s", lastError, problems)
			if !strings.Contains(lastError, tc.want) {
				t.Errorf("last_error %q does not say %q", lastError, tc.want)
			}
			for what, text := range map[string]string{"last_error": lastError, "the log": logs.String(), "Problems()": problems} {
				for _, secret := range []string{"auth_key=" + appKey, "auth_signature=", "body_md5=", "auth_timestamp=", "?auth", "not-the-secret", appSecret} {
					if strings.Contains(text, secret) {
						t.Errorf("%s carries %q:\n%s", what, secret, text)
					}
				}
			}
			if strings.Contains(problems, "http") || strings.Contains(problems, "127.0.0.1") {
				t.Errorf("Problems() names a URL or host:\n%s", problems)
			}
		})
	}
}
