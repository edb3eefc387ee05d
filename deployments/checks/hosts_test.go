package checks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/roomcast/roomcast/config"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/coreos/go-systemd/v22/unit"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// dockerImage is what the checks read from deployments/Dockerfile.
type dockerImage struct {
	entrypoint []string          // ENTRYPOINT, exec form
	cmd        []string          // CMD, exec form
	env        map[string]string // ENV of the final stage
	user       string
	exposed    []string
	health     []string // HEALTHCHECK's test
}

// parseDockerfile parses a Dockerfile with BuildKit's parser and linter (what
// `docker build` uses): a parse error or a lint warning is a finding.
func parseDockerfile(where string, src []byte, fs *findings) *dockerImage {
	res, err := parser.Parse(bytes.NewReader(src))
	if err != nil {
		fs.add("%s: %v", where, err)
		return nil
	}
	for _, w := range res.Warnings {
		fs.add("%s: %s", where, w.Short)
	}
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []parser.Range) {
		line := 0
		if len(loc) > 0 {
			line = loc[0].Start.Line
		}
		fs.add("%s:%d: %s: %s", where, line, rule, msg)
	}})
	stages, _, err := instructions.Parse(res.AST, lint)
	if err != nil {
		fs.add("%s: %v", where, err)
		return nil
	}
	if len(stages) < 2 {
		fs.add("%s: not a multi-stage build", where)
		return nil
	}
	// Every image the build pulls is pinned by digest: the frontend, each
	// FROM that is not an earlier stage.
	if syntax, _, _, ok := parser.DetectSyntax(src); ok {
		checkPinned(where+": # syntax=", syntax, fs)
	}
	stageNames := map[string]bool{}
	for _, st := range stages {
		if !stageNames[strings.ToLower(st.BaseName)] && st.BaseName != "scratch" {
			checkPinned(where+": FROM", st.BaseName, fs)
		}
		stageNames[st.Name] = true
	}
	built := map[string]bool{} // stages that compile ./cmd/roomcast statically
	for _, st := range stages[:len(stages)-1] {
		for _, c := range st.Commands {
			if run, ok := c.(*instructions.RunCommand); ok {
				line := strings.Join(run.CmdLine, " ")
				if strings.Contains(line, "go build") && strings.Contains(line, "./cmd/roomcast") && strings.Contains(line, "CGO_ENABLED=0") {
					built[st.Name] = true
				}
			}
		}
	}
	if len(built) == 0 {
		fs.add("%s: no build stage runs CGO_ENABLED=0 go build ./cmd/roomcast", where)
	}
	final := stages[len(stages)-1]
	if strings.Contains(final.BaseName, "golang") {
		fs.add("%s: the final stage is based on %s, not a small runtime image", where, final.BaseName)
	}
	img := &dockerImage{env: map[string]string{}}
	copied := map[string]bool{}
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			img.user = c.User
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				img.env[kv.Key] = kv.Value
			}
		case *instructions.ExposeCommand:
			img.exposed = append(img.exposed, c.Ports...)
		case *instructions.HealthCheckCommand:
			img.health = c.Health.Test
		case *instructions.EntrypointCommand:
			if c.PrependShell {
				fs.add("%s: ENTRYPOINT in shell form: roomcast would not be PID 1 and would not get SIGTERM", where)
			}
			img.entrypoint = c.CmdLine
		case *instructions.CmdCommand:
			if c.PrependShell {
				fs.add("%s: CMD in shell form", where)
			}
			img.cmd = c.CmdLine
		case *instructions.CopyCommand:
			if built[c.From] {
				copied[c.DestPath] = true
			}
		}
	}
	if len(img.entrypoint) != 1 || !copied[img.entrypoint[0]] {
		fs.add("%s: ENTRYPOINT %v is not the binary copied from the build stage", where, img.entrypoint)
	}
	uid, _, _ := strings.Cut(img.user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		fs.add("%s: USER %q is not a numeric non-root uid (Kubernetes' runAsNonRoot needs a number)", where, img.user)
	}
	return img
}

// checkDockerfile checks deployments/Dockerfile under root.
func checkDockerfile(f *codeFacts, root string) findings {
	var fs findings
	where := "deployments/Dockerfile"
	src, err := os.ReadFile(filepath.Join(root, where))
	if err != nil {
		fs.add("%s: %v", where, err)
		return fs
	}
	img := parseDockerfile(where, src, &fs)
	if img == nil {
		return fs
	}
	if reads, err := f.command(img.cmd); err != nil {
		fs.add("%s: CMD: %v", where, err)
	} else {
		// ENV holds only defaults: check the names, not a whole configuration.
		for _, name := range slices.Sorted(maps.Keys(img.env)) {
			if !reads[name] {
				fs.add("%s: ENV %s is not a setting roomcast reads", where, name)
			}
		}
	}
	cfg, err := config.Load(func(name string) string { return img.env[name] })
	if err != nil {
		fs.add("%s: ENV: %v", where, err)
	} else {
		exposes := func(port string) bool {
			return slices.ContainsFunc(img.exposed, func(p string) bool { return strings.TrimSuffix(p, "/tcp") == port })
		}
		if port := strconv.Itoa(httpPort(cfg)); !exposes(port) {
			fs.add("%s: EXPOSE %v does not include HTTP_ADDR's port %s", where, img.exposed, port)
		}
		if _, port, _ := net.SplitHostPort(cfg.API.Addr); !exposes(port) {
			fs.add("%s: EXPOSE %v does not include API_ADDR's port %s (roomcast api's)", where, img.exposed, port)
		}
	}
	checkHealthcheckCommand(f, where+": HEALTHCHECK", img.health, img.entrypoint, "run", img.env, &fs)
	return fs
}

// checkHealthcheckCommand checks a container health check (Docker's
// HEALTHCHECK or compose's healthcheck) of a container running `roomcast
// command` (run or api) with env: an exec-form roomcast command that
// succeeds against a running one, when that container's own address is the
// running one's and the other command's address has nothing listening.
func checkHealthcheckCommand(f *codeFacts, where string, test, entrypoint []string, command string, env map[string]string, fs *findings) {
	if len(test) < 2 || test[0] != "CMD" || len(entrypoint) == 0 || test[1] != entrypoint[0] {
		fs.add("%s: %v is not [\"CMD\", %q, ...]", where, test, strings.Join(entrypoint, " "))
		return
	}
	args := test[2:]
	if _, err := f.command(args); err != nil {
		fs.add("%s: %v", where, err)
		return
	}
	env = maps.Clone(env)
	if env == nil {
		env = map[string]string{}
	}
	const nothing = "127.0.0.1:1"
	env["HTTP_ADDR"], env["API_ADDR"] = f.workerAddr, nothing
	if command == "api" {
		env["HTTP_ADDR"], env["API_ADDR"] = nothing, f.apiAddr
	}
	if code, out, errOut, err := roomcastCmd(f.bin, args, env, 10*time.Second); code != 0 || err != nil {
		fs.add("%s: `roomcast %s` fails against a running `roomcast %s`: exit %d %v %s", where, strings.Join(args, " "), command, code, err, strings.TrimSpace(out+errOut))
	}
}

// checkDockerignore checks that the build context deployments/Dockerfile.dockerignore
// leaves keeps every file `go build ./cmd/roomcast` reads (Go and embedded
// files of the module's packages, go.mod, go.sum), listed by `go list` in repo.
func checkDockerignore(repo, root string) findings {
	var fs findings
	where := "deployments/Dockerfile.dockerignore"
	src, err := os.ReadFile(filepath.Join(root, where))
	if err != nil {
		fs.add("%s: %v", where, err)
		return fs
	}
	patterns, err := ignorefile.ReadAll(bytes.NewReader(src))
	if err != nil {
		fs.add("%s: %v", where, err)
		return fs
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		fs.add("%s: %v", where, err)
		return fs
	}
	cmd := exec.Command("go", "list", "-deps", "-json=Dir,GoFiles,EmbedFiles,Module", "./cmd/roomcast")
	cmd.Dir = repo
	out, err := cmd.Output()
	if err != nil {
		fs.add("go list ./cmd/roomcast: %v", err)
		return fs
	}
	needed := []string{"go.mod", "go.sum"}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			Dir                 string
			GoFiles, EmbedFiles []string
			Module              *struct{ Main bool }
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			fs.add("go list: %v", err)
			return fs
		}
		if p.Module == nil || !p.Module.Main {
			continue
		}
		dir, _ := filepath.Rel(repo, p.Dir)
		for _, file := range append(p.GoFiles, p.EmbedFiles...) {
			needed = append(needed, filepath.ToSlash(filepath.Join(dir, file)))
		}
	}
	if len(needed) < 10 {
		fs.add("go list found only %v", needed)
	}
	for _, file := range needed {
		if excluded, err := pm.MatchesOrParentMatches(file); err != nil || excluded {
			fs.add("%s: leaves %s, which the build needs, out of the context", where, file)
		}
	}
	return fs
}

// checkCompose loads deployments/compose.yaml under root with compose-go (the
// library `docker compose` is built on, which validates the file against the
// Compose schema) and checks roomcast's services and their wiring.
func checkCompose(f *codeFacts, root string) findings {
	var fs findings
	where := "deployments/compose.yaml"
	path := filepath.Join(root, where)
	opts, err := cli.NewProjectOptions([]string{path}, cli.WithWorkingDirectory(filepath.Dir(path)), cli.WithName("roomcast"))
	if err != nil {
		fs.add("%s: %v", where, err)
		return fs
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	project, err := opts.LoadProject(ctx)
	if err != nil {
		fs.add("%s: %v", where, err)
		return fs
	}
	var img *dockerImage
	if src, err := os.ReadFile(filepath.Join(root, "deployments", "Dockerfile")); err == nil {
		img = parseDockerfile("deployments/Dockerfile", src, new(findings)) // reported by checkDockerfile
	}

	var worker, api, migrate *types.ServiceConfig
	for _, name := range slices.Sorted(maps.Keys(project.Services)) {
		svc := project.Services[name]
		if svc.Build == nil { // pulled, not built here: pinned by digest
			checkPinned(where+": service "+name, svc.Image, &fs)
		}
		if !isRoomcastService(root, svc) {
			continue
		}
		switch {
		case len(svc.Command) > 0 && svc.Command[0] == "run":
			if worker != nil {
				fs.add("%s: two services run `roomcast run`", where)
			}
			worker = &svc
		case len(svc.Command) > 0 && svc.Command[0] == "api":
			if api != nil {
				fs.add("%s: two services run `roomcast api`", where)
			}
			api = &svc
		case len(svc.Command) > 0 && svc.Command[0] == "migrate":
			migrate = &svc
		default:
			fs.add("%s: service %s runs roomcast with command %v", where, name, svc.Command)
		}
	}
	if worker == nil || migrate == nil {
		fs.add("%s: needs a service built from deployments/Dockerfile running `run` and a one-shot one running `migrate up`", where)
		return fs
	}
	if worker.Image == "" || worker.Image != migrate.Image {
		fs.add("%s: services %s and %s must name the same image (got %q and %q)", where, worker.Name, migrate.Name, worker.Image, migrate.Image)
	}
	envOf := func(svc *types.ServiceConfig) map[string]string {
		env := map[string]string{}
		for k, v := range svc.Environment {
			if v == nil {
				fs.add("%s: service %s passes %s through from the host: give it a value", where, svc.Name, k)
				continue
			}
			env[k] = *v
		}
		return env
	}
	at := where + ": service " + worker.Name
	workerEnv := envOf(worker)
	cfg, ok := f.checkEnv(at, worker.Command, workerEnv, &fs)
	migAt := where + ": service " + migrate.Name
	migCfg, migOK := f.checkEnv(migAt, migrate.Command, envOf(migrate), &fs)
	if !slices.Equal(migrate.Command, []string{"migrate", "up"}) {
		fs.add("%s: command %v, want [migrate up]", migAt, migrate.Command)
	}
	if dep, ok := worker.DependsOn[migrate.Name]; !ok || dep.Condition != types.ServiceConditionCompletedSuccessfully {
		fs.add("%s: must depend on %s with condition %s, so that it starts on a migrated database", at, migrate.Name, types.ServiceConditionCompletedSuccessfully)
	}
	if worker.HealthCheck != nil && img != nil {
		checkHealthcheckCommand(f, at+": healthcheck", worker.HealthCheck.Test, img.entrypoint, "run", workerEnv, &fs)
	}
	if !ok {
		return fs
	}
	if api == nil {
		fs.add("%s: no service runs `roomcast api`", where)
	} else {
		checkComposeAPI(f, where, api, worker, migrate, cfg, img, envOf, &fs)
	}
	grace := 10 * time.Second // compose's default
	if worker.StopGracePeriod != nil {
		grace = time.Duration(*worker.StopGracePeriod)
	}
	if grace <= cfg.ShutdownTimeout+httpShutdownGrace {
		fs.add("%s: stop_grace_period %v is not longer than SHUTDOWN_TIMEOUT (%v) plus %v", at, grace, cfg.ShutdownTimeout, httpShutdownGrace)
	}
	port := httpPort(cfg)
	if !slices.ContainsFunc(worker.Ports, func(p types.ServicePortConfig) bool { return int(p.Target) == port }) {
		fs.add("%s: publishes no port %d, HTTP_ADDR's", at, port)
	}

	// The wiring: each address roomcast is given is a service of the stack,
	// configured to match.
	for _, b := range cfg.Kafka.Brokers {
		host, _, _ := net.SplitHostPort(b)
		kafka, ok := project.Services[host]
		if !ok {
			fs.add("%s: KAFKA_BROKERS %s is not a service of the stack", at, b)
			continue
		}
		kenv := envOf(&kafka)
		if roles := kenv["KAFKA_PROCESS_ROLES"]; !strings.Contains(roles, "broker") || !strings.Contains(roles, "controller") {
			fs.add("%s: service %s is not a one-node KRaft Kafka (KAFKA_PROCESS_ROLES %q)", where, host, roles)
		}
		if !strings.Contains(kenv["KAFKA_ADVERTISED_LISTENERS"], "://"+b) {
			fs.add("%s: service %s does not advertise %s (KAFKA_ADVERTISED_LISTENERS %q)", where, host, b, kenv["KAFKA_ADVERTISED_LISTENERS"])
		}
		if !dependsOn(project, worker.Name, host) {
			fs.add("%s: does not depend on %s", at, host)
		}
	}
	for _, topic := range []string{cfg.Topic, cfg.DLQTopic} {
		creator := ""
		for _, name := range slices.Sorted(maps.Keys(project.Services)) {
			svc := project.Services[name]
			script := strings.Join(append(slices.Clone(svc.Entrypoint), svc.Command...), " ")
			if regexp.MustCompile(`--topic\s+` + regexp.QuoteMeta(topic) + `(\s|$)`).MatchString(script) {
				creator = name
			}
		}
		if creator == "" {
			fs.add("%s: no service creates topic %s", where, topic)
		} else if !dependsOn(project, worker.Name, creator) {
			fs.add("%s: does not wait for %s, which creates topic %s", at, creator, topic)
		}
	}
	if u, err := url.Parse(cfg.DatabaseURL); err != nil {
		fs.add("%s: DATABASE_URL: %v", at, err)
	} else if pg, ok := project.Services[u.Hostname()]; !ok {
		fs.add("%s: DATABASE_URL's host %s is not a service of the stack", at, u.Hostname())
	} else {
		penv := envOf(&pg)
		pw, _ := u.User.Password()
		if penv["POSTGRES_USER"] != u.User.Username() || penv["POSTGRES_PASSWORD"] != pw || penv["POSTGRES_DB"] != strings.TrimPrefix(u.Path, "/") {
			fs.add("%s: DATABASE_URL's user, password and database are not service %s's POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB", at, pg.Name)
		}
		if migOK && migCfg.DatabaseURL != cfg.DatabaseURL {
			fs.add("%s: migrates another DATABASE_URL than %s uses", migAt, worker.Name)
		}
		if !dependsOn(project, migrate.Name, pg.Name) {
			fs.add("%s: does not depend on %s", migAt, pg.Name)
		}
	}
	if host, port, err := net.SplitHostPort(cfg.Pusher.Host); err != nil {
		fs.add("%s: PUSHER_HOST %q must name the stack's Pusher-compatible service", at, cfg.Pusher.Host)
	} else if sk, ok := project.Services[host]; !ok {
		fs.add("%s: PUSHER_HOST's host %s is not a service of the stack", at, host)
	} else {
		senv := envOf(&sk)
		if senv["SOKETI_DEFAULT_APP_ID"] != cfg.Pusher.AppID || senv["SOKETI_DEFAULT_APP_KEY"] != cfg.Pusher.Key || senv["SOKETI_DEFAULT_APP_SECRET"] != cfg.Pusher.Secret {
			fs.add("%s: PUSHER_APP_ID, PUSHER_KEY, PUSHER_SECRET are not service %s's SOKETI_DEFAULT_APP_ID, _KEY, _SECRET", at, host)
		}
		if want := cmpOr(senv["SOKETI_PORT"], "6001"); port != want { // soketi listens on 6001 unless SOKETI_PORT says otherwise
			fs.add("%s: PUSHER_HOST's port %s is not the port %s listens on (%s)", at, port, host, want)
		}
		if cfg.Pusher.UseTLS {
			fs.add("%s: PUSHER_USE_TLS must be false: %s serves plain HTTP", at, host)
		}
		if !dependsOn(project, worker.Name, host) {
			fs.add("%s: does not depend on %s", at, host)
		}
	}
	return fs
}

// isRoomcastService reports whether svc is built from deployments/Dockerfile with the repository as context.
func isRoomcastService(root string, svc types.ServiceConfig) bool {
	if svc.Build == nil {
		return false
	}
	ctx := svc.Build.Context
	if !filepath.IsAbs(ctx) {
		ctx = filepath.Join(root, "deployments", ctx)
	}
	dockerfile := svc.Build.Dockerfile
	if !filepath.IsAbs(dockerfile) {
		dockerfile = filepath.Join(ctx, dockerfile)
	}
	return filepath.Clean(ctx) == filepath.Clean(root) && filepath.Clean(dockerfile) == filepath.Join(root, "deployments", "Dockerfile")
}

// dependsOn reports whether service from waits, directly or not, for service to.
func dependsOn(p *types.Project, from, to string) bool {
	seen := map[string]bool{}
	var walk func(string) bool
	walk = func(name string) bool {
		if seen[name] {
			return false
		}
		seen[name] = true
		for dep := range p.Services[name].DependsOn {
			if dep == to || walk(dep) {
				return true
			}
		}
		return false
	}
	return walk(from)
}

// checkSystemd checks deployments/systemd's units, roomcast.service (the
// worker) and roomcast-api.service, and the environment files beside them;
// the API's must sign for the worker's Pusher app and read its database.
func checkSystemd(f *codeFacts, root string) findings {
	var fs findings
	worker, workerOK := checkSystemdUnit(f, root, "roomcast.service", "run", &fs)
	api, apiOK := checkSystemdUnit(f, root, "roomcast-api.service", "api", &fs)
	if workerOK && apiOK {
		at := "deployments/systemd/roomcast-api.env"
		if api.Pusher.Key != worker.Pusher.Key || api.Pusher.Secret != worker.Pusher.Secret {
			fs.add("%s: PUSHER_KEY and PUSHER_SECRET are not roomcast.env's: the API would sign for another Pusher app than the worker's", at)
		}
		// The worker's unit migrates, so its role owns the schema.
		checkAPIDatabase(at, worker.DatabaseURL, api.DatabaseURL, worker.DatabaseURL, &fs)
	}
	return fs
}

// checkSystemdUnit checks deployments/systemd/name, whose ExecStart runs
// `roomcast command`, and its environment file, and returns the
// configuration ExecStart runs with. The unit is parsed with go-systemd's
// parser.
func checkSystemdUnit(f *codeFacts, root, name, command string, fs *findings) (config.Config, bool) {
	where := "deployments/systemd/" + name
	src, err := os.ReadFile(filepath.Join(root, where))
	if err != nil {
		fs.add("%s: %v", where, err)
		return config.Config{}, false
	}
	opts, err := unit.DeserializeOptions(bytes.NewReader(src))
	if err != nil {
		fs.add("%s: %v", where, err)
		return config.Config{}, false
	}
	values := map[string][]string{}
	for _, o := range opts {
		values[o.Section+"."+o.Name] = append(values[o.Section+"."+o.Name], o.Value)
	}
	last := func(key string) string {
		if v := values[key]; len(v) > 0 {
			return v[len(v)-1]
		}
		return ""
	}
	yes := func(key string) bool {
		switch strings.ToLower(last(key)) {
		case "yes", "true", "on", "1":
			return true
		}
		return false
	}
	if got := last("Service.Restart"); got != "on-failure" {
		fs.add("%s: Restart=%s, want on-failure", where, got)
	}
	if !yes("Service.NoNewPrivileges") {
		fs.add("%s: NoNewPrivileges is not yes", where)
	}
	if got := last("Service.ProtectSystem"); got != "strict" {
		fs.add("%s: ProtectSystem=%s, want strict", where, got)
	}
	if user := last("Service.User"); !yes("Service.DynamicUser") && (user == "" || user == "root" || user == "0") {
		fs.add("%s: runs as root: set DynamicUser=yes or a dedicated User=", where)
	}
	if got := last("Service.KillSignal"); got != "SIGTERM" {
		fs.add("%s: KillSignal=%s, want SIGTERM (roomcast stops cleanly on it)", where, got)
	}
	envFile := strings.TrimPrefix(last("Service.EnvironmentFile"), "-")
	if envFile == "" {
		fs.add("%s: no EnvironmentFile", where)
	}
	envWhere := "deployments/systemd/" + filepath.Base(envFile)
	envSrc, err := os.ReadFile(filepath.Join(root, envWhere))
	if err != nil {
		fs.add("%s: EnvironmentFile %s has no example beside the unit: %v", where, envFile, err)
		return config.Config{}, false
	}
	env := parseEnvFile(envWhere, envSrc, fs)
	commands := append([]string{}, values["Service.ExecStartPre"]...)
	start := values["Service.ExecStart"]
	if len(start) != 1 {
		fs.add("%s: needs exactly one ExecStart", where)
		return config.Config{}, false
	}
	commands = append(commands, start[0])
	var cfg config.Config
	ok := false
	for i, line := range commands {
		fields := strings.Fields(strings.TrimLeft(line, "-@:+!"))
		if len(fields) == 0 || filepath.Base(fields[0]) != "roomcast" {
			fs.add("%s: %q does not run roomcast", where, line)
			continue
		}
		c, good := f.checkEnv(where+": "+line+" with "+envWhere, fields[1:], env, fs)
		if i == len(commands)-1 {
			if len(fields) < 2 || fields[1] != command {
				fs.add("%s: ExecStart %q does not run `roomcast %s`", where, line, command)
			}
			cfg, ok = c, good
		}
	}
	if !ok {
		return config.Config{}, false
	}
	stop, err := parseTimespan(last("Service.TimeoutStopSec"))
	if err != nil {
		fs.add("%s: TimeoutStopSec: %v", where, err)
	} else if stop <= cfg.ShutdownTimeout+httpShutdownGrace {
		fs.add("%s: TimeoutStopSec %v is not longer than SHUTDOWN_TIMEOUT (%v) plus %v", where, stop, cfg.ShutdownTimeout, httpShutdownGrace)
	}
	return cfg, true
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// parseEnvFile reads KEY=VALUE lines as systemd's EnvironmentFile does
// (blank lines and lines starting with # or ; are comments; a value may be
// quoted).
func parseEnvFile(where string, src []byte, fs *findings) map[string]string {
	env := map[string]string{}
	for i, line := range strings.Split(string(src), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || !envName.MatchString(k) {
			fs.add("%s:%d: not KEY=VALUE: %q", where, i+1, line)
			continue
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		if _, dup := env[k]; dup {
			fs.add("%s:%d: %s is set twice", where, i+1, k)
		}
		env[k] = v
	}
	return env
}

var timespanPart = regexp.MustCompile(`^(\d+(?:\.\d+)?)\s*([a-z]*)\s*`)

// parseTimespan parses a systemd time span ("45s", "1min 30s", "90").
func parseTimespan(s string) (time.Duration, error) {
	units := map[string]time.Duration{
		"": time.Second, "us": time.Microsecond, "usec": time.Microsecond, "ms": time.Millisecond, "msec": time.Millisecond,
		"s": time.Second, "sec": time.Second, "second": time.Second, "seconds": time.Second,
		"m": time.Minute, "min": time.Minute, "minute": time.Minute, "minutes": time.Minute,
		"h": time.Hour, "hr": time.Hour, "hour": time.Hour, "hours": time.Hour,
	}
	rest := strings.TrimSpace(s)
	if rest == "" {
		return 0, errors.New("not set (systemd's default is 90s, from DefaultTimeoutStopSec)")
	}
	var total time.Duration
	for rest != "" {
		m := timespanPart.FindStringSubmatch(rest)
		if m == nil {
			return 0, fmt.Errorf("%q is not a time span", s)
		}
		unit, ok := units[m[2]]
		if !ok {
			return 0, fmt.Errorf("%q: unknown unit %q", s, m[2])
		}
		n, _ := strconv.ParseFloat(m[1], 64)
		total += time.Duration(n * float64(unit))
		rest = rest[len(m[0]):]
	}
	return total, nil
}
