//go:build linux

package soketi

import "syscall"

// childSysProcAttr asks the kernel to kill soketi when the test binary dies,
// so a crashed test does not leave it listening.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
