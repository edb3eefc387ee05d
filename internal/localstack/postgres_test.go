package localstack_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/roomcast/roomcast/internal/localstack"
)

// testSettings are the speed settings tests use; synchronous_commit stays on
// where a test kills the server and expects committed rows to survive.
var testSettings = map[string]string{
	"fsync":            "off",
	"full_page_writes": "off",
	"max_connections":  "50",
}

// startPostgres starts a cluster for one test, skipping (failing under CI)
// when PostgreSQL is not installed.
func startPostgres(t *testing.T, cfg localstack.PostgresConfig) *localstack.Postgres {
	t.Helper()
	if cfg.Settings == nil {
		cfg.Settings = testSettings
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	pg, err := localstack.StartPostgres(ctx, cfg)
	if errors.Is(err, localstack.ErrPostgresNotInstalled) {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("StartPostgres: %v", err)
	}
	t.Cleanup(func() {
		if err := pg.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return pg
}

func exec(t *testing.T, url, sql string, args ...any) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func count(t *testing.T, url, table string) int {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

func TestPostgresLifecycle(t *testing.T) {
	began := time.Now()
	pg := startPostgres(t, localstack.PostgresConfig{})
	t.Logf("temporary cluster started in %v on port %d", time.Since(began).Round(time.Millisecond), pg.Port())

	url, err := pg.CreateDatabase(t.Context(), "lifecycle")
	if err != nil {
		t.Fatal(err)
	}
	if want := "postgres://postgres@127.0.0.1:" + strconv.Itoa(pg.Port()) + "/lifecycle?sslmode=disable"; url != want {
		t.Fatalf("URL = %q, want %q", url, want)
	}
	exec(t, url, "CREATE TABLE items (id int PRIMARY KEY)")
	exec(t, url, "INSERT INTO items VALUES (1)")

	began = time.Now()
	if err := pg.Restart(t.Context()); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	t.Logf("restart took %v", time.Since(began).Round(time.Millisecond))
	exec(t, url, "INSERT INTO items VALUES (2)")

	if err := pg.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if _, err := pgx.Connect(t.Context(), url); err == nil {
		t.Fatal("connected to a killed server")
	}
	if err := pg.Restart(t.Context()); err != nil {
		t.Fatalf("Restart after Kill: %v", err)
	}
	if n := count(t, url, "items"); n != 2 {
		t.Fatalf("items after kill and restart = %d, want 2", n)
	}

	if _, err := pg.CreateDatabase(t.Context(), "lifecycle"); err == nil {
		t.Fatal("creating an existing database succeeded")
	}
}

func TestPostgresStopRemovesTempDir(t *testing.T) {
	pg := startPostgres(t, localstack.PostgresConfig{})
	conn, err := pgx.Connect(t.Context(), pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	var dataDir string
	err = conn.QueryRow(t.Context(), "SHOW data_directory").Scan(&dataDir)
	conn.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(dataDir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temp dir %s still there after Stop (stat: %v)", filepath.Dir(dataDir), err)
	}
	if err := pg.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := pg.Restart(t.Context()); err == nil {
		t.Fatal("Restart after Stop succeeded")
	}
}

func TestPostgresReusesDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pg")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// t.TempDir's parents are 0700: the postgres OS user must get through.
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	first := startPostgres(t, localstack.PostgresConfig{Dir: dir})
	url, err := first.CreateDatabase(t.Context(), "kept")
	if err != nil {
		t.Fatal(err)
	}
	exec(t, url, "CREATE TABLE kept (id int)")
	exec(t, url, "INSERT INTO kept VALUES (1)")

	t.Run("server left running by an earlier run", func(t *testing.T) {
		// As if `roomcast-dev` had been killed: its server is still up
		// and a new run starts on the same directory.
		second := startPostgres(t, localstack.PostgresConfig{Dir: dir})
		if n := count(t, second.URL("kept"), "kept"); n != 1 {
			t.Fatalf("rows = %d, want 1", n)
		}
		if err := first.Stop(); err != nil {
			t.Fatalf("Stop of the displaced server: %v", err)
		}
		if err := second.Stop(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("stale postmaster.pid", func(t *testing.T) {
		// A lock file naming a process that no longer exists.
		pidFile := filepath.Join(dir, "data", "postmaster.pid")
		stale := "999999\n" + filepath.Join(dir, "data") + "\n"
		if err := os.WriteFile(pidFile, []byte(stale), 0o600); err != nil {
			t.Fatal(err)
		}
		third := startPostgres(t, localstack.PostgresConfig{Dir: dir, Port: 0})
		if n := count(t, third.URL("kept"), "kept"); n != 1 {
			t.Fatalf("rows = %d, want 1", n)
		}
		if err := third.Stop(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, "data", "PG_VERSION")); err != nil {
			t.Fatalf("Stop removed a caller-owned Dir: %v", err)
		}
	})
}

func TestPostgresFixedPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	pg := startPostgres(t, localstack.PostgresConfig{Port: port})
	if pg.Port() != port {
		t.Fatalf("Port() = %d, want %d", pg.Port(), port)
	}
	exec(t, pg.URL("postgres"), "SELECT 1")
}

func TestPostgresNotInstalled(t *testing.T) {
	_, err := localstack.StartPostgres(t.Context(), localstack.PostgresConfig{BinDir: t.TempDir()})
	if !errors.Is(err, localstack.ErrPostgresNotInstalled) {
		t.Fatalf("err = %v, want ErrPostgresNotInstalled", err)
	}
}

func TestPostgresStartFailureShowsServerLog(t *testing.T) {
	_, err := localstack.StartPostgres(t.Context(), localstack.PostgresConfig{
		Settings: map[string]string{"fsync": "off", "no_such_setting": "1"},
	})
	if errors.Is(err, localstack.ErrPostgresNotInstalled) {
		t.Skip(err)
	}
	if err == nil {
		t.Fatal("started with an unknown setting")
	}
	if !strings.Contains(err.Error(), "exited during start-up") || !strings.Contains(err.Error(), `unrecognized configuration parameter "no_such_setting"`) {
		t.Fatalf("error does not say what failed with the server log:\n%v", err)
	}
}
