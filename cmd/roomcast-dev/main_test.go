package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/internal/testsupport"
)

func TestMain(m *testing.M) { testsupport.Main(m) }

// TestArguments: asking for help prints the usage and starts nothing; an
// argument roomcast-dev does not take is a usage error (exit 2).
func TestArguments(t *testing.T) {
	t.Parallel()
	env := func(string) string { return "" }
	for _, args := range [][]string{{"-h"}, {"--help"}, {"-help"}, {"help"}} {
		var out bytes.Buffer
		if err := run(t.Context(), args, env, &out, &out); err != nil {
			t.Errorf("roomcast-dev %s: %v, want its usage and success", strings.Join(args, " "), err)
		}
		if !strings.Contains(out.String(), "Usage:") || !strings.Contains(out.String(), "roomcast-dev [-dir") {
			t.Errorf("roomcast-dev %s printed %q, want the usage", strings.Join(args, " "), out.String())
		}
	}
	for _, args := range [][]string{{"fast"}, {"-verbose"}, {"-dir", t.TempDir(), "now"}} {
		var out bytes.Buffer
		if err := run(t.Context(), args, env, &out, &out); !errors.Is(err, errUsage) {
			t.Errorf("roomcast-dev %s: %v (output %q), want a usage error", strings.Join(args, " "), err, out.String())
		}
	}
}

// TestDevStack: the dev stack runs the worker on its in-process Kafka and
// local Pusher capture, says where they are, sends the sample conversation
// and prints what reaches Pusher; its API authorizes the sample's members
// by the dev header (and no one who left); it stops cleanly when its
// context ends.
func TestDevStack(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": testsupport.Postgres(t), "HTTP_ADDR": "127.0.0.1:0", "API_ADDR": "127.0.0.1:0"}
	var out testsupport.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-dir", t.TempDir(), "-kafka", "127.0.0.1:0"}, func(k string) string { return env[k] }, &out, &out)
	}()
	deadline := time.After(90 * time.Second)
	for _, want := range []string{"roomcast dev is running", "sent a sample conversation of 18 events", "hello, edited", "Maintenance tonight"} {
		for !strings.Contains(out.String(), want) {
			select {
			case err := <-done:
				t.Fatalf("roomcast-dev returned %v before printing %q:\n%s", err, want, out.String())
			case <-deadline:
				t.Fatalf("roomcast-dev did not print %q within 90s:\n%s", want, out.String())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	checkDevAPI(t, &out)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("roomcast-dev returned %v after its context ended:\n%s", err, out.String())
		}
	case <-time.After(45 * time.Second):
		t.Fatalf("roomcast-dev did not stop within 45s of its context ending")
	}
	t.Logf("output:\n%s", out.String())
}

// checkDevAPI calls the dev stack's API, whose address and dev identity
// header its banner prints, about the sample conversation it printed: in
// a room Grace left (user-left reached Pusher), Ada is still a member.
func checkDevAPI(t *testing.T, out *testsupport.SyncBuffer) {
	t.Helper()
	var apiAddr, room, ada []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		o := out.String()
		apiAddr = regexp.MustCompile(`(?m)^  api +http://(\S+) `).FindStringSubmatch(o)
		room = regexp.MustCompile(`pusher <- private-room-(room-\S+) +user-left `).FindStringSubmatch(o)
		ada = regexp.MustCompile(`"userId":"(u-ada-[^"]+)"`).FindStringSubmatch(o)
		if apiAddr != nil && room != nil && ada != nil && strings.Contains(o, "DEV ONLY identity") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the output does not show the API's address, its dev identity, a room Grace left and Ada:\n%s", o)
		}
	}
	grace := strings.Replace(ada[1], "u-ada-", "u-grace-", 1)
	for _, tc := range []struct {
		user, channel string
		status        int
		has           string
	}{
		{ada[1], "presence-room-" + room[1], 200, `\"name\":\"Ada\"`},
		{grace, "presence-room-" + room[1], 403, "not a member"},
		{"", "private-room-" + room[1], 401, "no X-Roomcast-User header"},
	} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+apiAddr[1]+"/pusher/auth",
			strings.NewReader(url.Values{"socket_id": {"1.2"}, "channel_name": {tc.channel}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if tc.user != "" {
			req.Header.Set("X-Roomcast-User", tc.user)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.has) {
			t.Errorf("%q on %s: %d %s, want %d with %s", tc.user, tc.channel, resp.StatusCode, b, tc.status, tc.has)
		}
	}
}
