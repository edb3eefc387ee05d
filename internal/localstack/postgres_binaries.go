package localstack

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

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
