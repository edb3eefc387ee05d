package worker

import (
	"runtime/debug"

	"github.com/roomcast/roomcast/config"
)

// defaultGOMEMLIMIT and defaultGOGC tune the Go collector unless the
// runtime's own GOMEMLIMIT and GOGC are set. Under a backlog `roomcast run`
// holds a few thousand events and their handler goroutines while it
// allocates fast, so at the runtime's GOGC of 100 the collector runs many
// times a second. GOGC=200 halves that work, and the soft limit keeps the
// process under 300 MB of RSS with the default in-flight caps: the collector
// works harder before the process passes it. A limit below what the
// in-flight caps need makes the collector run all the time
// (docs/performance.md has the measurements).
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
