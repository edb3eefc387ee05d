package checks

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomcast/roomcast/internal/testsupport"

	dto "github.com/prometheus/client_model/go"

	"github.com/roomcast/roomcast/config"
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
// cmd/roomcast asks config.Load to validate for it (codeFacts.command checks
// that against the binary); "command -flag" is that command with that flag,
// when the flag changes what it validates. Other commands, dev above all,
// start things and are no business of a deployment.
var deployableCommands = map[string][]config.Need{
	"run":              {config.Kafka, config.Database, config.Pusher, config.HTTP},
	"api":              {config.Database, config.API},
	"migrate":          {config.Database},
	"healthcheck":      {config.HTTP},
	"healthcheck -api": {config.API},
}

// needsOf returns what deployableCommands says args validate: the entry of
// its command with the most of its flags.
func (f *codeFacts) needsOf(args []string) ([]config.Need, bool) {
	var needs []config.Need
	best := -1
	for key, n := range f.commands {
		words := strings.Fields(key)
		if len(args) == 0 || words[0] != args[0] || len(words) <= best {
			continue
		}
		if !slices.ContainsFunc(words[1:], func(w string) bool { return !slices.Contains(args[1:], w) }) {
			needs, best = n, len(words)
		}
	}
	return needs, best >= 0
}

// secretSettings are settings whose values are credentials (config.Load never
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

// httpShutdownGrace is how long the worker may spend closing its HTTP server
// before it waits up to SHUTDOWN_TIMEOUT for the work in flight: a stop's
// grace period must cover both.
const httpShutdownGrace = 5 * time.Second

// codeFacts is what the deployment files are checked against.
type codeFacts struct {
	bin        string                   // the roomcast binary
	commands   map[string][]config.Need // deployableCommands
	metrics    *metricFacts             // the worker's and the API's
	workerAddr string                   // a running `roomcast run`: GET /healthz, /readyz, /metrics
	apiAddr    string                   // a running `roomcast api`: the same, and the API
	mu         sync.Mutex
	reads      map[string]map[string]bool // command line -> the settings it reads
}

// command checks that args (what follows the binary) is a command a
// deployment runs and that roomcast accepts, and returns the environment
// variables that command reads. It runs the binary with an empty environment
// (and an invalid HTTP_ADDR), so that every command stops at its
// configuration check, before any network: a command line roomcast does not
// accept exits 2 with its usage, one it does exits 1 with the configuration
// error config.Load gives for the command's parts, which also checks that
// deployableCommands names the parts cmd/roomcast asks for. The settings are
// the ones config.Load looks up, which is how the commands read their
// environment (were a command to read one elsewhere, a deployment setting it
// would be reported as unread: the check fails, never passes, on that).
func (f *codeFacts) command(args []string) (map[string]bool, error) {
	line := strings.Join(args, " ")
	if len(args) == 0 {
		return nil, errors.New("no roomcast command")
	}
	needs, ok := f.needsOf(args)
	if !ok {
		return nil, fmt.Errorf("`roomcast %s`: %q is not one of the commands a deployment runs (run, api, migrate, healthcheck)", line, args[0])
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if reads, ok := f.reads[line]; ok {
		return reads, nil
	}
	empty := map[string]string{"HTTP_ADDR": "not-an-address"}
	code, _, stderr, err := roomcastCmd(f.bin, args, empty, 10*time.Second)
	switch {
	case err != nil:
		return nil, fmt.Errorf("`roomcast %s`: %v", line, err)
	case code == 2:
		return nil, fmt.Errorf("`roomcast %s` is not a command line roomcast accepts: %s", line, firstLine(stderr))
	case code == 0 || !strings.Contains(stderr, "invalid configuration"):
		return nil, fmt.Errorf("`roomcast %s` with an empty environment exited %d (%s), want a configuration error", line, code, strings.TrimSpace(stderr))
	}
	reads := map[string]bool{}
	_, want := config.Load(func(name string) string {
		reads[name] = true
		return empty[name]
	}, needs...)
	if want == nil || strings.TrimSpace(stderr) != "roomcast: "+want.Error() {
		return nil, fmt.Errorf("`roomcast %s` with an empty environment says\n%s\nbut config.Load for %v says\n%v\n(deployableCommands is out of date)",
			line, strings.TrimSpace(stderr), needs, want)
	}
	f.reads[line] = reads
	return reads, nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// config loads the configuration the command args would run with in env.
func (f *codeFacts) config(args []string, env map[string]string) (config.Config, error) {
	if len(args) == 0 {
		return config.Config{}, errors.New("no roomcast command")
	}
	needs, _ := f.needsOf(args)
	return config.Load(func(name string) string { return env[name] }, needs...)
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
			fs.add("%s: sets %s, which `roomcast %s` does not read (not a setting in config/config.go)", where, name, strings.Join(args, " "))
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

// getFrom asks the running `roomcast command` (run or api) for path.
func (f *codeFacts) getFrom(command, path string) (int, string, error) {
	if command == "api" {
		return httpGet(f.apiAddr, path)
	}
	return f.get(path)
}

// metricFacts is what a running worker's /metrics shows.
type metricFacts struct {
	labels map[string]map[string]bool // label names of each family
	types  map[string]dto.MetricType
}

// registered reports whether the worker exports a metric called name.
// /metrics shows a family once it has a series: newDeploymentFacts sends the
// traffic that gives every family its series first.
func (m *metricFacts) registered(name string) bool {
	_, ok := m.types[name]
	return ok
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
		switch t := m.types[base]; {
		case t == dto.MetricType_HISTOGRAM, t == dto.MetricType_GAUGE_HISTOGRAM:
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

func newMetricFacts(fams map[string]*dto.MetricFamily) *metricFacts {
	m := &metricFacts{labels: map[string]map[string]bool{}, types: map[string]dto.MetricType{}}
	for name, fam := range fams {
		ls := map[string]bool{}
		for _, metric := range fam.GetMetric() {
			for _, l := range metric.GetLabel() {
				ls[l.GetName()] = true
			}
		}
		m.labels[name] = ls
		m.types[name] = fam.GetType()
	}
	return m
}

// newDeploymentFacts builds roomcast, starts `roomcast run` against the test
// stack (in-process Kafka, a throwaway Postgres, fake Pusher) and sends it
// what gives each of its metrics a series, so that /metrics shows them: a
// short conversation, one message that breaks the contract, an id reused with
// another payload, and a projection that fails and is retried (the messages
// table locked past PROJECTION_TIMEOUT). Then it starts `roomcast api` on the
// same database and asks it what gives its metrics theirs. It returns the
// facts read from both.
func newDeploymentFacts(t *testing.T) *codeFacts {
	t.Helper()
	bin := roomcastBinary(t)
	s := newStack(t, bin)
	w := s.startWorker(map[string]string{"PROJECTION_TIMEOUT": "1s"})
	w.waitReady()

	created := chattest.MessageCreated("room-d1", "msg-d1", "hello")
	s.produceEvents(
		chattest.MemberJoined("room-d1", "user-d1"),
		created,
		chattest.UserNotification([]string{"user-d1"}, "hi"),
	)
	s.produce(kmsg{key: "room-d1", value: []byte("not a CloudEvent")})
	s.waitCount(30*time.Second, 1, `SELECT count(*) FROM messages WHERE id = 'msg-d1'`)
	s.produceEvents(chattest.MessageCreated("room-d1", "msg-d1b", "another payload").WithID(created.ID))

	tx, err := s.db.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(t.Context(), `LOCK TABLE messages IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	s.produceEvents(chattest.MessageCreated("room-d2", "msg-d2", "held"))
	testsupport.WaitFor(t, 30*time.Second, "a projection to fail on the locked table", func() (bool, string) {
		fams, err := scrape(w.addr)
		if err != nil {
			return false, err.Error()
		}
		n := sum(fams, "roomcast_projection_failures_total")
		return n >= 1, fmt.Sprintf("%v failures", n)
	})
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.waitCount(30*time.Second, 1, `SELECT count(*) FROM messages WHERE id = 'msg-d2'`)

	var fams map[string]*dto.MetricFamily
	testsupport.WaitFor(t, 30*time.Second, "the worker's metrics to show the traffic", func() (bool, string) {
		var err error
		if fams, err = scrape(w.addr); err != nil {
			return false, err.Error()
		}
		dead, delivered := sum(fams, "roomcast_events_dead_lettered_total"), sum(fams, "roomcast_deliveries_delivered_total")
		conflicts := sum(fams, "roomcast_event_id_conflicts_total")
		_, lag := fams["roomcast_kafka_consumer_lag"]
		return dead >= 1 && delivered >= 2 && conflicts >= 1 && lag,
			fmt.Sprintf("dead letters %v, delivered %v, id conflicts %v, lag series %v", dead, delivered, conflicts, lag)
	})
	api := startAPIWithTraffic(t, s)
	maps.Copy(fams, api.metrics)
	return &codeFacts{bin: bin, commands: deployableCommands, metrics: newMetricFacts(fams), workerAddr: w.addr, apiAddr: api.addr, reads: map[string]map[string]bool{}}
}
