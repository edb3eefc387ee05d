package checks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomcast/roomcast/internal/testsupport"
)

// The checks run roomcast as an operator does: the binary, built from the
// repository, started as a subprocess with the environment a deployment
// gives it.

func TestMain(m *testing.M) { testsupport.Main(m) }

// repoRoot is the repository (roomcast's module) this module sits in.
var repoRoot = func() string {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		panic(err)
	}
	return root
}()

// binary is the roomcast binary the tests that run at the same time share.
var binary struct {
	mu    sync.Mutex
	users int
	dir   string
}

// roomcastBinary returns the path of the roomcast binary, built from the
// repository on first use. The tests running at the same time share one
// build; it is removed when the last of them ends (testsupport.Main exits
// the test binary, so TestMain cannot remove it after the tests).
func roomcastBinary(t *testing.T) string {
	t.Helper()
	binary.mu.Lock()
	defer binary.mu.Unlock()
	if binary.users == 0 {
		dir, err := os.MkdirTemp("", "roomcast-checks-")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		build := exec.CommandContext(ctx, goTool(), "build", "-o", filepath.Join(dir, "roomcast"), "./cmd/roomcast")
		build.Dir = repoRoot
		if out, err := build.CombinedOutput(); err != nil {
			_ = os.RemoveAll(dir)
			t.Fatalf("go build ./cmd/roomcast: %v\n%s", err, out)
		}
		binary.dir = dir
	}
	binary.users++
	t.Cleanup(func() {
		binary.mu.Lock()
		defer binary.mu.Unlock()
		if binary.users--; binary.users == 0 {
			_ = os.RemoveAll(binary.dir)
		}
	})
	return filepath.Join(binary.dir, "roomcast")
}

func goTool() string {
	if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}

// environ turns env into a process environment, sorted (and nothing else:
// not the test's own environment).
func environ(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

// roomcastCmd runs `roomcast args` with exactly env and returns its exit
// status (-1 when it could not run or did not end in time), standard output
// and standard error.
func roomcastCmd(bin string, args []string, env map[string]string, timeout time.Duration) (int, string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = environ(env)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String(), nil
	case ctx.Err() != nil:
		return -1, stdout.String(), stderr.String(), fmt.Errorf("did not end within %v", timeout)
	case errors.As(err, &exit):
		return exit.ExitCode(), stdout.String(), stderr.String(), nil
	default:
		return -1, stdout.String(), stderr.String(), err
	}
}
