package localstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// still running on this data directory is shut down, a lock file naming a
// dead (or unrelated) process is removed.
func (p *Postgres) clearStalePID() error {
	path := filepath.Join(p.dataDir, "postmaster.pid")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("start postgres: read %s: %w", path, err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(first))
	if pid <= 0 || !processAlive(pid) {
		p.log.Warn("removing stale postmaster.pid", "pid", pid)
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("start postgres: remove stale %s: %w", path, err)
		}
		return nil
	}
	ours, known := isPostmasterOf(pid, p.dataDir)
	switch {
	case !known:
		return nil // let postgres judge the lock file itself
	case !ours:
		p.log.Warn("removing stale postmaster.pid naming an unrelated process", "pid", pid)
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("start postgres: remove stale %s: %w", path, err)
		}
		return nil
	}
	// A server left running by an earlier run (killed before it could stop it).
	p.log.Warn("stopping a postgres server left running on this data directory", "pid", pid, "dir", p.dataDir)
	for _, step := range []struct {
		sig  syscall.Signal
		wait time.Duration
	}{{syscall.SIGINT, stopTimeout}, {syscall.SIGQUIT, killTimeout}} {
		if err := syscall.Kill(pid, step.sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("start postgres: stop leftover server (pid %d): %w", pid, err)
		}
		for deadline := time.Now().Add(step.wait); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if !processAlive(pid) {
				_ = os.Remove(path)
				return nil
			}
		}
	}
	return fmt.Errorf("start postgres: a leftover server (pid %d) on %s does not stop", pid, p.dataDir)
}

// startLocked starts the postmaster on p.port and waits until it accepts
// connections.
func (p *Postgres) startLocked(ctx context.Context) error {
	var logStart int64
	if st, err := os.Stat(p.logPath); err == nil {
		logStart = st.Size()
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start postgres: open log: %w", err)
	}
	defer logf.Close()

	args := []string{"-D", p.dataDir, "-p", strconv.Itoa(p.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=", // TCP only: no socket path length or permission traps
	}
	keys := make([]string, 0, len(p.settings))
	for k := range p.settings {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		args = append(args, "-c", k+"="+p.settings[k])
	}
	// Not CommandContext: the server must outlive the start-up context.
	cmd := exec.Command(filepath.Join(p.binDir, "postgres"), args...)
	cmd.Dir = p.baseDir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childSysProcAttr(p.cred, syscall.SIGINT)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: run %s: %w", cmd.Path, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	p.proc, p.exited = cmd, exited

	if err := p.waitReady(ctx, exited); err != nil {
		_ = p.shutdownLocked(syscall.SIGQUIT, "immediate", killTimeout)
		return fmt.Errorf("%w\n--- server log (%s) ---\n%s", err, p.logPath, p.logTail(logStart))
	}
	return nil
}

// waitReady polls until the server accepts a connection, the process exits,
// or the deadline passes.
func (p *Postgres) waitReady(ctx context.Context, exited <-chan struct{}) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStartTimeout)
		defer cancel()
	}
	target := databaseURL(p.port, "postgres")
	var lastErr error
	for {
		select {
		case <-exited:
			return fmt.Errorf("start postgres on port %d: server exited during start-up (%v)", p.port, p.proc.ProcessState)
		default:
		}
		attempt, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(attempt, target)
		if err == nil {
			err = conn.Ping(attempt)
			_ = conn.Close(context.WithoutCancel(ctx))
		}
		cancel()
		if err == nil {
			return nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("start postgres on port %d: not accepting connections: %w (last error: %v)", p.port, ctx.Err(), lastErr)
		case <-exited:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// shutdownLocked signals the postmaster (SIGINT: fast, SIGQUIT: immediate)
// and waits for it to exit, escalating to SIGKILL after timeout.
func (p *Postgres) shutdownLocked(sig syscall.Signal, mode string, timeout time.Duration) error {
	if p.proc == nil {
		return nil
	}
	proc, exited := p.proc, p.exited
	p.proc, p.exited = nil, nil
	select {
	case <-exited:
		return nil // already gone (crashed or killed from outside)
	default:
	}
	if err := proc.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop postgres (%s): signal: %w", mode, err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(timeout):
	}
	_ = proc.Process.Kill()
	<-exited
	return fmt.Errorf("stop postgres (%s): no exit after %v, killed it", mode, timeout)
}

// logTail returns the end of the server log written since offset from.
func (p *Postgres) logTail(from int64) string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	if len(b) == 0 {
		return "(empty)"
	}
	return tail(b, logTailBytes)
}

// tail returns at most the last n bytes of b, starting at a line boundary.
func tail(b []byte, n int) string {
	if len(b) <= n {
		return strings.TrimRight(string(b), "\n")
	}
	b = b[len(b)-n:]
	if i := slices.Index(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	return "...\n" + strings.TrimRight(string(b), "\n")
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
