package api_test

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// processCPUSeconds is the CPU time this process used so far.
func processCPUSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// clusterCPUSeconds is the CPU time used so far by the postmaster pid and
// its server processes (those that exited included), from /proc; 0 for
// pid 0 or without /proc.
func clusterCPUSeconds(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	const clockTicks = 100 // USER_HZ
	total := 0.0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f := procStat(p)
		if len(f) < 15 || p != pid && f[1] != strconv.Itoa(pid) {
			continue
		}
		for _, k := range []int{11, 12} { // utime, stime
			v, _ := strconv.ParseFloat(f[k], 64)
			total += v / clockTicks
		}
		if p == pid {
			for _, k := range []int{13, 14} { // cutime, cstime: its exited children
				v, _ := strconv.ParseFloat(f[k], 64)
				total += v / clockTicks
			}
		}
	}
	return total
}

// procStat is the fields of /proc/<pid>/stat after the command name (the
// state is index 0, the parent's pid index 1), or nil.
func procStat(pid int) []string {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	i := strings.LastIndexByte(string(raw), ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(raw[i+1:]))
}
