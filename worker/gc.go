package worker

import (
	"runtime/debug"

	"github.com/roomcast/roomcast/config"
)

// defaultGOMEMLIMIT and defaultGOGC tune the Go collector unless the
// runtime's own GOMEMLIMIT and GOGC are set. Under a backlog `roomcast run`
// holds a few thousand events and their handler goroutines (~70-120 MB of
// heap, ~60 MB of stacks) and allocates ~3.5 GB per 200,000 events, so at
// the runtime's GOGC of 100 it collected five times a second and spent over a
// quarter of its CPU on it. GOGC=200 halves that (BenchmarkIngest: +13-20%
// events/s), and the soft limit keeps the process under 300 MB of RSS with
// the default in-flight caps (peak ~270 MB): the collector works harder
// before the process passes it. A lower limit than the in-flight caps need
// makes the collector run all the time (200 MiB: -35% events/s).
const (
	defaultGOMEMLIMIT = 256 << 20
	defaultGOGC       = 200
)

// TuneGC sets the collector's soft memory limit and GOGC to the worker's
// defaults, unless GOMEMLIMIT or GOGC set them.
func TuneGC(getenv config.Getenv) {
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultGOMEMLIMIT)
	}
	if getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGOGC)
	}
}
