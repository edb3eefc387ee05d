package soketi

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// Line is one JSON line a script printed; Type is its "type" field.
type Line struct {
	Type string          `json:"type"`
	Raw  json.RawMessage `json:"-"`
}

// Script is a Node script under clients/js, run with clients/js as its
// working directory (so it imports pusher-js and the built library), that
// prints JSON lines on stdout and reads commands as JSON lines on stdin.
type Script struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *logBuffer
	done   chan struct{}
	err    error

	mu      sync.Mutex
	lines   []Line
	changed chan struct{} // closed and replaced on each new line
}

// RunScript starts node on path (relative to clients/js) with env added to
// the environment; it is killed when t ends if it has not exited by then.
func RunScript(t testing.TB, path string, env ...string) *Script {
	t.Helper()
	node := Node(t)
	cmd := exec.Command(node, path)
	cmd.Dir = ClientDir(t)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = childSysProcAttr()
	s := &Script{cmd: cmd, stderr: &logBuffer{}, done: make(chan struct{}), changed: make(chan struct{})}
	cmd.Stderr = s.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if s.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("node %s: %v", path, err)
	}
	go s.read(stdout)
	t.Cleanup(func() {
		_ = s.stdin.Close()
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-s.done
		}
	})
	return s
}

func (s *Script) read(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		raw := append(json.RawMessage(nil), sc.Bytes()...)
		var l Line
		if json.Unmarshal(raw, &l) != nil {
			l.Type = "text" // not JSON: kept for the failure message
		}
		l.Raw = raw
		s.mu.Lock()
		s.lines = append(s.lines, l)
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	}
	s.err = s.cmd.Wait()
	close(s.done)
}

// Send writes v to the script's stdin as one JSON line.
func (s *Script) Send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = s.stdin.Write(append(b, '\n'))
	return err
}

// CloseStdin tells the script to finish.
func (s *Script) CloseStdin() error { return s.stdin.Close() }

// Lines is everything the script printed so far.
func (s *Script) Lines() []Line {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Line(nil), s.lines...)
}

// Await waits up to timeout for a line of type typ for which match (nil:
// any) holds, and returns the first; it fails t if none comes or the script
// exits first.
func (s *Script) Await(t testing.TB, timeout time.Duration, typ string, match func(json.RawMessage) bool) json.RawMessage {
	t.Helper()
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		for _, l := range s.lines {
			if l.Type == typ && (match == nil || match(l.Raw)) {
				s.mu.Unlock()
				return l.Raw
			}
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-s.done:
			select {
			case <-changed: // lines printed before the exit are read first
				continue
			default:
			}
			t.Fatalf("node exited (%v) before printing a %q line\n%s", s.err, typ, s.Transcript())
		case <-deadline:
			t.Fatalf("no %q line within %v\n%s", typ, timeout, s.Transcript())
		}
	}
}

// Wait waits up to timeout for the script to exit and returns how it ended.
func (s *Script) Wait(timeout time.Duration) error {
	select {
	case <-s.done:
		return s.err
	case <-time.After(timeout):
		return fmt.Errorf("node still running after %v", timeout)
	}
}

// Transcript is the script's output so far (stdout lines, then the tail of
// stderr) for failure messages.
func (s *Script) Transcript() string {
	var b []byte
	b = append(b, "stdout:\n"...)
	for _, l := range s.Lines() {
		b = append(b, l.Raw...)
		b = append(b, '\n')
	}
	b = append(b, "stderr:\n"...)
	b = append(b, s.stderr.tail(30)...)
	return string(b)
}
