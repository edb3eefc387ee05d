package publishers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pusher/pusher-http-go/v5"

	"github.com/roomcast/roomcast/internal/fakepusher"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err   error
		kind  failureKind
		label string
	}{
		{errors.New("Status Code: 503 - x"), retryable, "503"},
		{errors.New("Status Code: 500 - internal"), retryable, "500"},
		{errors.New("Status Code: 502 - bad gateway"), retryable, "502"},
		{errors.New("Status Code: 429 - slow down"), retryable, "429"},
		{errors.New("Status Code: 413 - Event data too large"), rejected, "413"},
		{errors.New("Status Code: 400 - Batch too large"), rejected, "400"},
		{errors.New("Status Code: 401 - Invalid signature"), unauthorized, "401"},
		{errors.New("Status Code: 403 - app disabled"), unauthorized, "403"},
		{errors.New("Status Code: 404 - 404 NOT FOUND"), unauthorized, "404"},
		{&url.Error{Op: "Post", URL: "http://127.0.0.1:1/apps/1/events", Err: syscall.ECONNREFUSED}, retryable, "network"},
		{fmt.Errorf("wrapped: %w", &url.Error{Op: "Post", URL: "http://x", Err: context.DeadlineExceeded}), retryable, "network"},
		{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNRESET}, retryable, "network"},
		{context.DeadlineExceeded, retryable, "network"},
		{errors.New("Event payload exceeded maximum size (10241 bytes is too much)"), rejected, "client"},
		{errors.New("Data of the event #3 in batch, exceeded maximum size (10241 bytes is too much)"), rejected, "client"},
		{errors.New("The channel named bad! has a non-valid name"), rejected, "client"},
	}
	for _, tt := range tests {
		kind, label := classify(tt.err)
		if kind != tt.kind || label != tt.label {
			t.Errorf("classify(%q) = %v, %q; want %v, %q", tt.err, kind, label, tt.kind, tt.label)
		}
	}
}

// classify reads the errors the real client returns, not just their documented shape.
func TestClassifyRealClientErrors(t *testing.T) {
	t.Parallel()
	const appID, key, secret = "4242", "test-key", "test-secret"
	srv, err := fakepusher.Start(fakepusher.Config{AppID: appID, Key: key, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Close() }()
	client := func(cfg ClientConfig) *pusher.Client {
		if cfg.AppID == "" {
			cfg.AppID = appID
		}
		if cfg.Key == "" {
			cfg.Key = key
		}
		if cfg.Secret == "" {
			cfg.Secret = secret
		}
		if cfg.Host == "" {
			cfg.Host = srv.Host()
		}
		return NewClient(cfg)
	}
	ok := []pusher.Event{{Channel: "private-room-a", Name: "new-message", Data: `{"id":"m-1"}`}}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedHost := ln.Addr().String()
	_ = ln.Close()

	tests := []struct {
		name  string
		call  func() error
		kind  failureKind
		label string
	}{
		{"connection refused", func() error {
			_, err := client(ClientConfig{Host: closedHost}).TriggerBatch(ok)
			return err
		}, retryable, "network"},
		{"timeout", func() error {
			srv.SetLatency(2 * time.Second)
			defer srv.SetLatency(0)
			_, err := client(ClientConfig{Timeout: 100 * time.Millisecond}).TriggerBatch(ok)
			return err
		}, retryable, "network"},
		{"503", func() error {
			srv.FailNext(1, 503)
			_, err := client(ClientConfig{}).TriggerBatch(ok)
			return err
		}, retryable, "503"},
		{"429", func() error {
			srv.FailNext(1, 429)
			_, err := client(ClientConfig{}).TriggerMultiWithParams([]string{"a", "b"}, "e", "{}", pusher.TriggerParams{})
			return err
		}, retryable, "429"},
		{"413 from the server", func() error {
			srv.RejectWhen(func(fakepusher.Event) int { return 413 })
			defer srv.RejectWhen(nil)
			_, err := client(ClientConfig{}).TriggerBatch(ok)
			return err
		}, rejected, "413"},
		{"400 batch of 11", func() error {
			_, err := client(ClientConfig{}).TriggerBatch(slices.Repeat(ok, 11))
			return err
		}, rejected, "400"},
		{"401 wrong secret", func() error {
			_, err := client(ClientConfig{Secret: "wrong"}).TriggerBatch(ok)
			return err
		}, unauthorized, "401"},
		{"404 wrong app id", func() error {
			_, err := client(ClientConfig{AppID: "9999"}).TriggerBatch(ok)
			return err
		}, unauthorized, "404"},
		{"client-side size check (trigger)", func() error {
			_, err := client(ClientConfig{}).TriggerMultiWithParams([]string{"a", "b"}, "e", strings.Repeat("x", 10241), pusher.TriggerParams{})
			return err
		}, rejected, "client"},
		{"client-side size check (batch)", func() error {
			_, err := client(ClientConfig{}).TriggerBatch([]pusher.Event{{Channel: "a", Name: "e", Data: strings.Repeat("x", 10241)}})
			return err
		}, rejected, "client"},
	}
	for _, tt := range tests {
		err := tt.call()
		if err == nil {
			t.Errorf("%s: the call succeeded", tt.name)
			continue
		}
		if kind, label := classify(err); kind != tt.kind || label != tt.label {
			t.Errorf("%s: classify(%q) = %v, %q; want %v, %q", tt.name, err, kind, label, tt.kind, tt.label)
		}
	}
}
