package localstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrPostgresNotInstalled is wrapped by StartPostgres when no PostgreSQL server binaries (initdb and postgres) can be found.
var ErrPostgresNotInstalled = errors.New("PostgreSQL server binaries (initdb, postgres) not found: install PostgreSQL (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql) or set PG_BINDIR")

const (
	defaultStartTimeout = 60 * time.Second
	stopTimeout         = 60 * time.Second
	killTimeout         = 30 * time.Second
	logTailBytes        = 4096
)

// PostgresConfig configures StartPostgres; the zero value starts a temporary cluster on a free port.
type PostgresConfig struct {
	// Dir holds the cluster: data in Dir/data, the server log in Dir/postgres.log.
	// "" means a new temporary directory that Stop removes. An initialised
	// cluster already in Dir/data is reused.
	Dir string
	// Port is the TCP port on 127.0.0.1; 0 picks a free one.
	Port int
	// BinDir holds initdb and postgres; "" searches $PG_BINDIR, `pg_config
	// --bindir`, /usr/lib/postgresql/*/bin (highest version) and PATH.
	BinDir string
	// Logger receives start/stop events; nil discards them.
	Logger *slog.Logger
	// Settings are extra server settings passed as -c name=value (for
	// tests: fsync=off, synchronous_commit=off, full_page_writes=off,
	// max_connections=200). They are applied last, so they override the
	// defaults (listen_addresses=127.0.0.1, no Unix sockets). With
	// fsync=off, initdb also runs with --no-sync.
	Settings map[string]string
}

// Postgres is a throwaway PostgreSQL cluster started from the installed server binaries, run as a child process.
type Postgres struct {
	log       *slog.Logger
	binDir    string
	baseDir   string
	dataDir   string
	logPath   string
	settings  map[string]string
	cred      *syscall.Credential // nil: run as the current user
	removeDir bool
	pickPort  bool

	mu      sync.Mutex
	port    int
	proc    *exec.Cmd
	exited  chan struct{}
	stopped bool
}

// StartPostgres initialises (or reuses) a cluster, starts the server and returns once it accepts connections.
//
// As root the server runs as the `postgres` OS user (initdb and postgres
// refuse root). The server listens on 127.0.0.1 only, with Unix sockets
// disabled. On Linux it is sent SIGINT (fast shutdown) if this process dies,
// so a crashed parent does not leak it; call Stop to remove a temporary
// directory.
func StartPostgres(ctx context.Context, cfg PostgresConfig) (*Postgres, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	binDir, err := findPostgresBinDir(cfg.BinDir)
	if err != nil {
		return nil, err
	}
	p := &Postgres{
		log:      log.With("component", "postgres"),
		binDir:   binDir,
		settings: cfg.Settings,
		port:     cfg.Port,
		pickPort: cfg.Port == 0,
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("start postgres: running as root needs the `postgres` OS user (initdb and postgres refuse to run as root): %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	}
	if err := p.prepareDir(cfg.Dir); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok && p.removeDir {
			_ = os.RemoveAll(p.baseDir)
		}
	}()

	if err := p.initdb(ctx); err != nil {
		return nil, err
	}
	if err := p.clearStalePID(); err != nil {
		return nil, err
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	began := time.Now()
	for attempt := 1; ; attempt++ {
		if p.pickPort {
			if p.port, err = freePort(); err != nil {
				return nil, fmt.Errorf("start postgres: pick a free port: %w", err)
			}
		}
		err = p.startLocked(ctx)
		if err == nil {
			break
		}
		// A port picked at random can be taken before the server binds it.
		if p.pickPort && attempt < 3 && strings.Contains(err.Error(), "could not bind") {
			p.log.Warn("postgres port taken, retrying on another", "port", p.port)
			continue
		}
		return nil, err
	}
	ok = true
	p.log.Info("postgres started", "port", p.port, "dir", p.baseDir, "bin", p.binDir, "took", time.Since(began).Round(time.Millisecond))
	return p, nil
}

// Port returns the TCP port the server listens on at 127.0.0.1.
func (p *Postgres) Port() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.port
}

// URL returns the connection URL for database dbname: postgres://postgres@127.0.0.1:PORT/dbname?sslmode=disable.
func (p *Postgres) URL(dbname string) string {
	return databaseURL(p.Port(), dbname)
}

// databaseURL builds the URL of database dbname on a local server.
func databaseURL(port int, dbname string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Path:     "/" + dbname,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// CreateDatabase creates an empty database called name and returns its URL.
func (p *Postgres) CreateDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("create database %q: connect: %w", name, err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %q: %w", name, err)
	}
	return p.URL(name), nil
}

// Stop shuts the server down (like pg_ctl stop -m fast) and removes the directory if StartPostgres created it; later calls do nothing.
func (p *Postgres) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return nil
	}
	p.stopped = true
	err := p.shutdownLocked(syscall.SIGINT, "fast", stopTimeout)
	if p.removeDir {
		if rerr := os.RemoveAll(p.baseDir); rerr != nil {
			err = errors.Join(err, fmt.Errorf("stop postgres: remove %s: %w", p.baseDir, rerr))
		}
	}
	if err == nil {
		p.log.Info("postgres stopped", "port", p.port)
	}
	return err
}

// Restart stops the server (fast shutdown, or nothing if it is not running) and starts it again on the same port and data directory.
func (p *Postgres) Restart(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return errors.New("restart postgres: already stopped")
	}
	if err := p.shutdownLocked(syscall.SIGINT, "fast", stopTimeout); err != nil {
		return fmt.Errorf("restart postgres: %w", err)
	}
	if err := p.startLocked(ctx); err != nil {
		return fmt.Errorf("restart postgres: %w", err)
	}
	p.log.Info("postgres restarted", "port", p.port)
	return nil
}

// Kill stops the server abruptly (like pg_ctl stop -m immediate), leaving crash recovery to a later Restart; Stop is still needed to clean up.
func (p *Postgres) Kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.shutdownLocked(syscall.SIGQUIT, "immediate", killTimeout)
}

// prepareDir creates or adopts the cluster directory and makes it usable by
// the user the server runs as.
func (p *Postgres) prepareDir(dir string) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "roomcast-pg-")
		if err != nil {
			return fmt.Errorf("start postgres: create temp dir: %w", err)
		}
		p.removeDir = true
		if p.cred != nil {
			// MkdirTemp makes 0700 dirs: let the postgres user in, and
			// fall back to /tmp if $TMPDIR's parents keep it out.
			if err := os.Chmod(d, 0o755); err != nil {
				_ = os.RemoveAll(d)
				return fmt.Errorf("start postgres: chmod temp dir: %w", err)
			}
			if traversable(filepath.Dir(d), p.cred) != nil {
				_ = os.RemoveAll(d)
				if d, err = os.MkdirTemp("/tmp", "roomcast-pg-"); err != nil {
					return fmt.Errorf("start postgres: create temp dir: %w", err)
				}
				if err := os.Chmod(d, 0o755); err != nil {
					_ = os.RemoveAll(d)
					return fmt.Errorf("start postgres: chmod temp dir: %w", err)
				}
			}
		}
		dir = d
	} else {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return fmt.Errorf("start postgres: dir %q: %w", dir, err)
		}
		dir = abs
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("start postgres: create dir: %w", err)
		}
	}
	p.baseDir = dir
	p.dataDir = filepath.Join(dir, "data")
	p.logPath = filepath.Join(dir, "postgres.log")

	if p.cred == nil {
		return nil
	}
	uid, gid := int(p.cred.Uid), int(p.cred.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("start postgres: chown %s to postgres: %w", dir, err)
	}
	if err := traversable(filepath.Dir(dir), p.cred); err != nil {
		return fmt.Errorf("start postgres: the postgres OS user cannot reach %s: %w (make every parent directory traversable, e.g. chmod o+x, or use a directory under /tmp)", dir, err)
	}
	// A data directory created by an earlier run as another user (or copied
	// in) must belong to postgres before the server will use it.
	if st, err := os.Stat(p.dataDir); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != uid {
			p.log.Info("chowning postgres data dir to the postgres user", "dir", p.dataDir)
			err := filepath.WalkDir(p.dataDir, func(path string, _ fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				return os.Lchown(path, uid, gid)
			})
			if err != nil {
				return fmt.Errorf("start postgres: chown %s to postgres: %w", p.dataDir, err)
			}
		}
	}
	return nil
}

// traversable checks that a user with cred can search every directory from
// dir up to the root (mode bits only; ACLs are not consulted).
func traversable(dir string, cred *syscall.Credential) error {
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		mode := st.Mode().Perm()
		var can bool
		switch {
		case sys.Uid == cred.Uid:
			can = mode&0o100 != 0
		case sys.Gid == cred.Gid:
			can = mode&0o010 != 0
		default:
			can = mode&0o001 != 0
		}
		if !can {
			return fmt.Errorf("%s (mode %v) is not traversable by uid %d", d, mode, cred.Uid)
		}
		if parent := filepath.Dir(d); parent == d {
			return nil
		}
	}
}

// initdb creates the cluster unless Dir/data already holds one.
func (p *Postgres) initdb(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(p.dataDir, "PG_VERSION")); err == nil {
		p.log.Info("reusing postgres cluster", "dir", p.dataDir)
		return nil
	}
	if entries, err := os.ReadDir(p.dataDir); err == nil && len(entries) > 0 {
		return fmt.Errorf("start postgres: %s exists, is not empty and holds no cluster (no PG_VERSION): remove it", p.dataDir)
	}
	began := time.Now()
	base := []string{"-D", p.dataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8"}
	if strings.EqualFold(p.settings["fsync"], "off") {
		base = append(base, "--no-sync")
	}
	var outs []string
	for _, locale := range []string{"C.UTF-8", "C"} {
		cmd := p.command(ctx, "initdb", append(slices.Clone(base), "--locale="+locale)...)
		out, err := cmd.CombinedOutput()
		if err == nil {
			p.log.Info("postgres cluster initialised", "dir", p.dataDir, "locale", locale, "took", time.Since(began).Round(time.Millisecond))
			return nil
		}
		outs = append(outs, fmt.Sprintf("initdb --locale=%s: %v\n%s", locale, err, tail(out, logTailBytes)))
		if !strings.Contains(strings.ToLower(string(out)), "locale") {
			break // not a locale problem: retrying with another one will not help
		}
	}
	return fmt.Errorf("start postgres: initdb failed:\n%s", strings.Join(outs, "\n"))
}

// command builds a command for a PostgreSQL binary, run as the server user.
func (p *Postgres) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(p.binDir, name), args...)
	cmd.Dir = p.baseDir
	cmd.SysProcAttr = childSysProcAttr(p.cred, syscall.SIGKILL)
	return cmd
}

// clearStalePID deals with a postmaster.pid left by an earlier run: a server
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

// findPostgresBinDir locates a directory holding initdb and postgres.
func findPostgresBinDir(explicit string) (string, error) {
	if explicit != "" {
		if hasServerBinaries(explicit) {
			return explicit, nil
		}
		return "", fmt.Errorf("BinDir %s: %w", explicit, ErrPostgresNotInstalled)
	}
	var tried []string
	try := func(dir string) bool {
		if dir == "" {
			return false
		}
		tried = append(tried, dir)
		return hasServerBinaries(dir)
	}
	if d := os.Getenv("PG_BINDIR"); try(d) {
		return d, nil
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if d := strings.TrimSpace(string(out)); try(d) {
			return d, nil
		}
	}
	if d := highestVersionDir("/usr/lib/postgresql/*/bin"); try(d) {
		return d, nil
	}
	for _, name := range []string{"postgres", "initdb"} {
		if path, err := exec.LookPath(name); err == nil {
			if real, err := filepath.EvalSymlinks(path); err == nil {
				if d := filepath.Dir(real); try(d) {
					return d, nil
				}
			}
		}
	}
	return "", fmt.Errorf("tried %s: %w", strings.Join(append(tried, "PATH"), ", "), ErrPostgresNotInstalled)
}

// highestVersionDir returns the match of pattern whose first wildcard part
// is the highest version number, "" if none.
func highestVersionDir(pattern string) string {
	matches, _ := filepath.Glob(pattern)
	version := func(m string) []int {
		var v []int
		for _, part := range strings.Split(filepath.Base(filepath.Dir(m)), ".") {
			n, _ := strconv.Atoi(part)
			v = append(v, n)
		}
		return v
	}
	best := ""
	for _, m := range matches {
		if hasServerBinaries(m) && (best == "" || slices.Compare(version(m), version(best)) > 0) {
			best = m
		}
	}
	return best
}

// hasServerBinaries reports whether dir holds executable initdb and postgres.
func hasServerBinaries(dir string) bool {
	for _, name := range []string{"initdb", "postgres"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.IsDir() || st.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}
