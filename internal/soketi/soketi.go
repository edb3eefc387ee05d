// Package soketi runs the browser side of end-to-end tests: soketi, a
// Pusher-protocol server, from clients/js's node_modules, and the Node
// scripts whose pusher-js clients connect to it.
package soketi

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/roomcast/roomcast/internal/testsupport"
)

// Config is the Pusher app soketi serves; empty fields get test defaults.
type Config struct {
	AppID, Key, Secret string
}

// Server is a running soketi: its HTTP API (what pusher-http-go calls) and
// its WebSocket endpoint (what pusher-js connects to) share Port.
type Server struct {
	AppID, Key, Secret string
	// Port is the port of the HTTP API and the WebSockets on 127.0.0.1.
	Port int

	bin, dir         string
	metrics, cluster int
	log              *logBuffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// startTimeout bounds how long soketi may take to answer /ready.
const startTimeout = 60 * time.Second

// Start runs soketi on free ports until t ends. Without node or an
// installed clients/js it skips t with the reason (fails it under CI=true).
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	node := Node(t)
	dir := ClientDir(t)
	bin := filepath.Join(dir, "node_modules", "@soketi", "soketi", "bin", "server.js")
	_, err := os.Stat(bin)
	testsupport.Require(t, err == nil, "soketi is not installed in clients/js/node_modules: run (cd clients/js && npm ci)")
	s := &Server{
		AppID: or(cfg.AppID, "roomcast-test"), Key: or(cfg.Key, "test-key"), Secret: or(cfg.Secret, "soketi-secret-5e1f"),
		bin: bin, dir: t.TempDir(), log: &logBuffer{},
	}
	s.Port, s.metrics = freeTCPPort(t), freeTCPPort(t)
	s.cluster = freeUDPPort(t)
	if err := s.start(node); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("soketi: %v", err)
		}
	})
	return s
}

// Host is "127.0.0.1:port": pusher-http-go's Host, the worker's PUSHER_HOST.
func (s *Server) Host() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// Log is what soketi printed so far.
func (s *Server) Log() string { return s.log.String() }

// Stop ends soketi (SIGTERM, then SIGKILL after 10 s); connected clients see
// their connection close. Stopping a stopped server does nothing.
func (s *Server) Stop() error { return s.stop(syscall.SIGTERM) }

// Kill ends soketi at once (SIGKILL), as a crash would.
func (s *Server) Kill() error { return s.stop(syscall.SIGKILL) }

// Restart starts a stopped soketi again on the same ports.
func (s *Server) Restart() error {
	s.mu.Lock()
	running := s.cmd != nil
	s.mu.Unlock()
	if running {
		return errors.New("soketi is running")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return err
	}
	return s.start(node)
}

func (s *Server) start(node string) error {
	cmd := exec.Command(node, s.bin, "start")
	cmd.Dir = s.dir // soketi reads a .env from its working directory
	cmd.Env = append(withoutSoketi(os.Environ()),
		"SOKETI_DEFAULT_APP_ID="+s.AppID,
		"SOKETI_DEFAULT_APP_KEY="+s.Key,
		"SOKETI_DEFAULT_APP_SECRET="+s.Secret,
		"SOKETI_DEFAULT_APP_USER_AUTHENTICATION=true",
		"SOKETI_HOST=127.0.0.1",
		"SOKETI_PORT="+strconv.Itoa(s.Port),
		// The /usage server listens even with metrics off: on its own port,
		// so that servers started in parallel do not clash on 9601.
		"SOKETI_METRICS_HOST=127.0.0.1",
		"SOKETI_METRICS_SERVER_PORT="+strconv.Itoa(s.metrics),
		// Peer discovery binds a UDP port (11002 by default) even alone.
		"SOKETI_CLUSTER_PORT="+strconv.Itoa(s.cluster),
		"SOKETI_SHUTDOWN_GRACE_PERIOD=100",
		"NO_COLOR=1", "FORCE_COLOR=0",
	)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	cmd.SysProcAttr = childSysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start soketi: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	if err := s.waitReady(done); err != nil {
		_ = s.Kill()
		return fmt.Errorf("soketi: %w\nlog:\n%s", err, s.log.tail(30))
	}
	return nil
}

// waitReady polls /ready until soketi answers 200, exits or startTimeout passes.
func (s *Server) waitReady(done <-chan struct{}) error {
	client := &http.Client{Timeout: time.Second}
	url := "http://" + s.Host() + "/ready"
	deadline := time.Now().Add(startTimeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-done:
			return errors.New("exited before it was ready")
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v", startTimeout)
		}
	}
}

func (s *Server) stop(sig syscall.Signal) error {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = cmd.Process.Kill()
	select {
	case <-done:
		return errors.New("did not stop on SIGTERM within 10s: killed")
	case <-time.After(10 * time.Second):
		return errors.New("did not exit after SIGKILL")
	}
}

// Node is the path of node, or skips t (fails it under CI=true).
func Node(t testing.TB) string {
	t.Helper()
	node, err := exec.LookPath("node")
	testsupport.Require(t, err == nil, "node is not installed (Node 20 runs soketi and pusher-js)")
	return node
}

// ClientDir is the absolute path of clients/js in this module (found from
// the working directory, which go test sets to the package's).
func ClientDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "clients", "js")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

func withoutSoketi(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "SOKETI_") {
			out = append(out, kv)
		}
	}
	return out
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func freeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

func freeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// logBuffer collects soketi's output for failure messages.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) tail(n int) string {
	lines := strings.Split(strings.TrimRight(l.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
