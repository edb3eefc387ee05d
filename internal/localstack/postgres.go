package localstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
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
