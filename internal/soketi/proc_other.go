//go:build !linux

package soketi

import "syscall"

// childSysProcAttr puts soketi in its own process group; outside Linux only
// Stop ends it.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
