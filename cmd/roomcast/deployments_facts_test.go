package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomcast/roomcast/config"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/roomcast/roomcast/internal/chattest"
)

// The facts the files in deployments/ are checked against. None is a copy:
// each is read from the code when the test runs, so a setting, a command or a
// metric added to roomcast is known to the checks without editing them.

// findings collects what a check found wrong, one sentence each, naming the
// file and the field.
type findings []string

func (f *findings) add(format string, args ...any) { *f = append(*f, fmt.Sprintf(format, args...)) }

// deployableCommands are the commands a deployment runs, each with what
// main.go's run asks loadConfig to validate for it. (Other commands, dev
// above all, start things and are no business of a deployment.)
var deployableCommands = map[string][]config.Need{
	"run":         {config.Kafka, config.Database, config.Pusher, config.HTTP},
	"migrate":     {config.Database},
	"healthcheck": {config.HTTP},
}

// secretSettings are settings whose values are credentials (config.go never
// puts them in an error): they come from a Kubernetes Secret, never from a
// ConfigMap. A setting whose name says secret, password, token or key material
// counts too, so a new credential is caught without editing this list.
var (
	secretSettings    = map[string]bool{"DATABASE_URL": true, "KAFKA_SASL_PASSWORD": true, "PUSHER_SECRET": true}
	secretSettingName = regexp.MustCompile(`SECRET|PASSWORD|TOKEN|PRIVATE_KEY|CREDENTIAL`)
)

func isSecretSetting(name string) bool {
	return secretSettings[name] || secretSettingName.MatchString(name)
}

// httpShutdownGrace is how long runWorker may spend closing its HTTP server
// (shutdownHTTP) before it waits up to SHUTDOWN_TIMEOUT for the work in flight:
// a stop's grace period must cover both.
const httpShutdownGrace = 5 * time.Second

// codeFacts is what the deployment files are checked against.
type codeFacts struct {
	metrics    *metricFacts
	workerAddr string // a running `roomcast run`: GET /healthz, /readyz, /metrics
	mu         sync.Mutex
	reads      map[string]map[string]bool // command line -> the settings it reads
}

// command checks that args (what follows the binary) is a command a
// deployment runs and that roomcast accepts, and returns the environment
// variables that command reads. It runs the command with an empty environment
// (and an invalid HTTP_ADDR), so that every command stops at its configuration
// check, before any network, and records what it looked up.
func (f *codeFacts) command(args []string) (map[string]bool, error) {
	line := strings.Join(args, " ")
	if len(args) == 0 {
		return nil, errors.New("no roomcast command")
	}
	if _, ok := deployableCommands[args[0]]; !ok {
		return nil, fmt.Errorf("`roomcast %s`: %q is not one of the commands a deployment runs (run, migrate, healthcheck)", line, args[0])
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if reads, ok := f.reads[line]; ok {
		return reads, nil
	}
	reads := map[string]bool{}
	var mu sync.Mutex
	env := func(name string) string {
		mu.Lock()
		defer mu.Unlock()
		reads[name] = true
		if name == "HTTP_ADDR" {
			return "not-an-address"
		}
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := run(ctx, args, env, strings.NewReader(""), io.Discard, io.Discard)
	switch {
	case errors.Is(err, errUsage):
		return nil, fmt.Errorf("`roomcast %s` is not a command line roomcast accepts: %v", line, err)
	case err == nil || !strings.Contains(err.Error(), "invalid configuration"):
		return nil, fmt.Errorf("`roomcast %s` with an empty environment returned %v, want a configuration error", line, err)
	}
	f.reads[line] = reads
	return reads, nil
}

// config loads the configuration the command args would run with in env.
func (f *codeFacts) config(args []string, env map[string]string) (config.Config, error) {
	if len(args) == 0 {
		return config.Config{}, errors.New("no roomcast command")
	}
	return config.Load(func(name string) string { return env[name] }, deployableCommands[args[0]]...)
}

// checkEnv checks an environment given to `roomcast args`: every name is a
// setting the command reads, and together they make a valid configuration,
// which it returns.
func (f *codeFacts) checkEnv(where string, args []string, env map[string]string, fs *findings) (config.Config, bool) {
	reads, err := f.command(args)
	if err != nil {
		fs.add("%s: %v", where, err)
		return config.Config{}, false
	}
	for _, name := range slices.Sorted(maps.Keys(env)) {
		if !reads[name] {
			fs.add("%s: sets %s, which `roomcast %s` does not read (not a setting in cmd/roomcast/config.go)", where, name, strings.Join(args, " "))
		}
	}
	cfg, err := f.config(args, env)
	if err != nil {
		fs.add("%s: the environment it gives `roomcast %s` is rejected: %v", where, strings.Join(args, " "), err)
		return config.Config{}, false
	}
	return cfg, true
}

// httpPort is the port HTTP_ADDR of cfg listens on.
func httpPort(cfg config.Config) int {
	_, port, err := net.SplitHostPort(cfg.HTTPAddr)
	if err != nil {
		return -1
	}
	var n int
	_, _ = fmt.Sscanf(port, "%d", &n)
	return n
}

// get asks the running worker for path and returns the status and body.
func (f *codeFacts) get(path string) (int, string, error) { return httpGet(f.workerAddr, path) }

// metricFacts is what a running worker's registry knows.
type metricFacts struct {
	mu     sync.Mutex
	reg    *prometheus.Registry
	cache  map[string]bool
	labels map[string]map[string]bool // label names of the families that had series when gathered
	types  map[string]dto.MetricType
}

var metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)

// registered reports whether the worker's registry has a collector that
// describes a metric called name. It asks the registry itself: registering a
// probe gauge of that name fails when a descriptor with that name is there
// (client_golang refuses a second help text or label set for one name). That
// covers vectors without series yet, which Gather leaves out.
func (m *metricFacts) registered(name string) bool {
	if !metricNameRE.MatchString(name) {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if known, ok := m.cache[name]; ok {
		return known
	}
	probe := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "deployments test probe: is this name registered?"})
	err := m.reg.Register(probe)
	known := false
	var already prometheus.AlreadyRegisteredError
	switch {
	case err == nil:
		m.reg.Unregister(probe)
	case errors.As(err, &already), strings.Contains(err.Error(), "same fully-qualified name"):
		known = true
	default:
		panic(fmt.Sprintf("registering a probe for %s: %v", name, err))
	}
	m.cache[name] = known
	return known
}

// family resolves a series name as PromQL writes it (roomcast_x_bucket of the
// histogram roomcast_x) to the metric registered under it.
func (m *metricFacts) family(series string) (string, bool) {
	if m.registered(series) {
		return series, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(series, suffix)
		if !ok || !m.registered(base) {
			continue
		}
		switch t, seen := m.types[base]; {
		case !seen, t == dto.MetricType_HISTOGRAM, t == dto.MetricType_GAUGE_HISTOGRAM:
			return base, true
		case t == dto.MetricType_SUMMARY && suffix != "_bucket":
			return base, true
		}
	}
	return "", false
}

// labelsOf returns the label names series has (le for a histogram's
// buckets); ok is false when the worker had no series of it to tell.
func (m *metricFacts) labelsOf(series string) (map[string]bool, bool) {
	fam, ok := m.family(series)
	if !ok {
		return nil, false
	}
	ls, ok := m.labels[fam]
	if !ok {
		return nil, false
	}
	if strings.HasSuffix(series, "_bucket") && fam != series {
		ls = maps.Clone(ls)
		ls["le"] = true
	}
	return ls, true
}

func newMetricFacts(reg *prometheus.Registry) (*metricFacts, error) {
	m := &metricFacts{reg: reg, cache: map[string]bool{}, labels: map[string]map[string]bool{}, types: map[string]dto.MetricType{}}
	fams, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	for _, fam := range fams {
		ls := map[string]bool{}
		for _, metric := range fam.GetMetric() {
			for _, l := range metric.GetLabel() {
				ls[l.GetName()] = true
			}
		}
		m.labels[fam.GetName()] = ls
		m.types[fam.GetName()] = fam.GetType()
	}
	return m, nil
}

// newDeploymentFacts starts `roomcast run` in process against the test stack
// (in-process Kafka, a throwaway Postgres, fake Pusher), sends it a short
// conversation and one message that breaks the contract, so that its labelled
// series exist, and returns the facts read from it.
func newDeploymentFacts(t *testing.T) *codeFacts {
	t.Helper()
	s := newStack(t)
	cfg, err := config.Load(s.getenv(map[string]string{"HTTP_ADDR": "127.0.0.1:0"}), deployableCommands["run"]...)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := runWorkerFor(t, cfg)

	s.produceEvents(
		chattest.MemberJoined("room-d1", "user-d1"),
		chattest.MessageCreated("room-d1", "msg-d1", "hello"),
		chattest.UserNotification([]string{"user-d1"}, "hi"),
	)
	s.produce(kmsg{key: "room-d1", value: []byte("not a CloudEvent")})
	waitFor(t, 30*time.Second, "the worker's metrics to show the traffic", func() (bool, string) {
		m := scrape(t, w.addr)
		dead, delivered := m.sum("roomcast_events_dead_lettered_total"), m.sum("roomcast_deliveries_delivered_total")
		lag := m.has("roomcast_kafka_consumer_lag")
		return dead >= 1 && delivered >= 2 && lag, fmt.Sprintf("dead letters %v, delivered %v, lag series %v", dead, delivered, lag)
	})
	mf, err := newMetricFacts(w.registry)
	if err != nil {
		t.Fatal(err)
	}
	return &codeFacts{metrics: mf, workerAddr: w.addr, reads: map[string]map[string]bool{}}
}
