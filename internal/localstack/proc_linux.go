//go:build linux

package localstack

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// childSysProcAttr puts a server child in its own process group (so a Ctrl-C
// aimed at the parent's group does not reach it before the parent shuts down
// cleanly) and asks the kernel to send it sig when the parent dies, so a
// crashed or killed parent does not leak a running server.
func childSysProcAttr(cred *syscall.Credential, sig syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: sig, Credential: cred}
}

// processName returns the command name of a live process, "" if unknown.
func processName(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// processAlive reports whether pid names a live (not zombie) process.
func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name: "pid (comm) S ...".
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// isPostmasterOf reports whether pid is a postgres process running in
// dataDir (the postmaster changes its working directory to its data
// directory); known is false when that cannot be determined.
func isPostmasterOf(pid int, dataDir string) (yes, known bool) {
	cwd, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
	if err != nil {
		return false, false
	}
	want, err := filepath.EvalSymlinks(dataDir)
	if err != nil {
		return false, false
	}
	return cwd == want && processName(pid) == "postgres", true
}
