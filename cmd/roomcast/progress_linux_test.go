package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair: what is written to the second is
// read from the first.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { _ = master.Close() })
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	t.Cleanup(func() { _ = tty.Close() })
	return master, tty
}

// On a terminal progress is a bar with the rate and time left, and no log
// line; elsewhere it is log lines.
func TestProgressBarOnATerminal(t *testing.T) {
	master, tty := openPTY(t)
	var logs bytes.Buffer
	p := newProgress(tty, slog.New(slog.NewTextHandler(&logs, nil)), "rebuild", time.Nanosecond)
	if p.bar == nil {
		t.Fatal("no bar on a terminal")
	}
	p.set(10, 100)
	time.Sleep(250 * time.Millisecond) // past the bar's throttle
	p.set(60, 100)
	p.finish()
	_ = tty.Close()
	out := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(master) // ends with EIO once the tty side is closed
		out <- string(b)
	}()
	var screen string
	select {
	case screen = <-out:
	case <-time.After(5 * time.Second):
		_ = master.Close()
		screen = <-out
	}
	for _, want := range []string{"rebuild", "events/s", "/100"} {
		if !strings.Contains(screen, want) {
			t.Errorf("the bar lacks %q: %q", want, screen)
		}
	}
	if logs.Len() != 0 {
		t.Errorf("log lines on a terminal: %s", logs.String())
	}

	var file bytes.Buffer
	q := newProgress(&file, slog.New(slog.NewTextHandler(&logs, nil)), "rebuild", time.Nanosecond)
	q.set(60, 100)
	q.finish()
	if q.bar != nil || file.Len() != 0 || !strings.Contains(logs.String(), "left=") {
		t.Errorf("not on a terminal: bar %v, output %q, logs %q", q.bar != nil, file.String(), logs.String())
	}
}
