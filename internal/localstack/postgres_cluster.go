package localstack

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

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
