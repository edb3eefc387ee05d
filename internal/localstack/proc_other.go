//go:build !linux

package localstack

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// childSysProcAttr puts a server child in its own process group; outside
// Linux there is no parent-death signal, so only Stop ends the server.
func childSysProcAttr(cred *syscall.Credential, _ syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: cred}
}

// processName returns the command name of a live process, "" if unknown.
func processName(pid int) string {
	out, err := exec.Command("ps", "-o", "comm=", "-p", strconv.Itoa(pid)).Output()
	if err != nil {
		return ""
	}
	return filepath.Base(strings.TrimSpace(string(out)))
}

// processAlive reports whether pid names a live process.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}

// isPostmasterOf reports whether pid is a postgres process; outside Linux
// its data directory cannot be checked cheaply, so any postgres counts.
func isPostmasterOf(pid int, _ string) (yes, known bool) {
	name := processName(pid)
	if name == "" {
		return false, false
	}
	return name == "postgres" || name == "postmaster", true
}
