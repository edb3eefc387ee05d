package testsupport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/roomcast/roomcast/internal/localstack"
)

// envDatabaseURL names an existing server to create test databases on instead of starting one.
const envDatabaseURL = "TEST_DATABASE_URL"

// sharedSettings trade durability for speed: a test cluster is thrown away.
var sharedSettings = map[string]string{
	"fsync":              "off",
	"synchronous_commit": "off",
	"full_page_writes":   "off",
	"max_connections":    "300",
}

var (
	mainCalled atomic.Bool
	noMainWarn sync.Once

	shared struct {
		mu      sync.Mutex
		started bool
		pg      *localstack.Postgres
		err     error
	}
)

// Postgres returns the URL of a fresh, empty database for this test, dropped when the test ends.
//
// The database lives on one throwaway cluster per test binary, started by the
// first call (call Main from TestMain to stop it), or on the server named by
// TEST_DATABASE_URL when that is set. When neither PostgreSQL binaries nor
// TEST_DATABASE_URL are available the test is skipped (failed under CI=true).
func Postgres(t testing.TB) string {
	t.Helper()
	name := "rc_test_" + randomSuffix()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	var adminURL, dbURL string
	if ext := os.Getenv(envDatabaseURL); ext != "" {
		u, err := url.Parse(ext)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			t.Fatalf("%s must be a URL like postgres://user:password@host:5432/postgres?sslmode=disable (got %q)", envDatabaseURL, ext)
		}
		if err := createDatabase(ctx, ext, name); err != nil {
			t.Fatalf("create test database on %s: %v", envDatabaseURL, err)
		}
		u.Path = "/" + name
		adminURL, dbURL = ext, u.String()
	} else {
		pg := sharedPostgres(t)
		var err error
		if dbURL, err = pg.CreateDatabase(ctx, name); err != nil {
			t.Fatalf("create test database: %v", err)
		}
		adminURL = pg.URL("postgres")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := dropDatabase(ctx, adminURL, name); err != nil {
			t.Logf("testsupport: drop test database %s: %v", name, err)
		}
	})
	return dbURL
}

// PostgresServer returns the shared throwaway cluster, for tests that restart or kill Postgres; it skips the test (fails it under CI=true) when TEST_DATABASE_URL names an external server.
//
// Restarting it affects every test of the package that uses Postgres, so a
// test that does must not call t.Parallel, and must leave the server running.
func PostgresServer(t testing.TB) *localstack.Postgres {
	t.Helper()
	if os.Getenv(envDatabaseURL) != "" {
		Require(t, false, envDatabaseURL+" names an external server, which this test cannot restart; unset it to run the test on a throwaway cluster")
	}
	return sharedPostgres(t)
}

// sharedPostgres starts the package's cluster on first use.
func sharedPostgres(t testing.TB) *localstack.Postgres {
	t.Helper()
	if !mainCalled.Load() {
		noMainWarn.Do(func() {
			t.Log("testsupport: TestMain does not call testsupport.Main, so the shared Postgres's temporary directory will be left behind")
		})
	}
	shared.mu.Lock()
	if !shared.started {
		shared.started = true
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		shared.pg, shared.err = localstack.StartPostgres(ctx, localstack.PostgresConfig{
			Settings: sharedSettings,
			Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		})
		cancel()
	}
	pg, err := shared.pg, shared.err
	shared.mu.Unlock()

	if errors.Is(err, localstack.ErrPostgresNotInstalled) {
		Require(t, false, fmt.Sprintf("PostgreSQL is needed: install it (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql), "+
			"set PG_BINDIR to the directory holding initdb and postgres, or set %s=postgres://user:password@host:5432/postgres?sslmode=disable "+
			"to use an existing server (%v)", envDatabaseURL, err))
	}
	if err != nil {
		t.Fatalf("start the shared test Postgres: %v", err)
	}
	return pg
}

// stopSharedPostgres stops the package's cluster if one was started.
func stopSharedPostgres() error {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.pg == nil {
		return nil
	}
	err := shared.pg.Stop()
	shared.pg, shared.err = nil, errors.New("testsupport: the shared Postgres was stopped by Main")
	return err
}

// createDatabase creates database name on the server at adminURL.
func createDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// dropDatabase drops database name, disconnecting whatever the test left
// connected (WITH (FORCE) needs PostgreSQL 13; older servers get a plain drop).
func dropDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
		if _, err2 := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident); err2 != nil {
			return errors.Join(err, err2)
		}
	}
	return nil
}
