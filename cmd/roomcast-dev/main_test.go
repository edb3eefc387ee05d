package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
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
// and prints what reaches Pusher; it stops cleanly when its context ends.
func TestDevStack(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": testsupport.Postgres(t), "HTTP_ADDR": "127.0.0.1:0"}
	var out syncBuffer
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

// syncBuffer is a bytes.Buffer safe for the stack and the test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
