package checks

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// PromQL is read with a few regular expressions rather than Prometheus' own
// parser: github.com/prometheus/prometheus is a very large module whose
// requirements would move this module's shared dependencies. What the checks
// need is narrow and regular: the metric names an expression uses (roomcast's
// all start with roomcast_, the Go and process collectors' with go_ and
// process_), the labels its selectors match on and the labels it groups by.
var (
	promString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promMetric   = regexp.MustCompile(`\b(?:roomcast|go|process)_[a-zA-Z0-9_:]*`)
	promSelector = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}`)
	promMatcher  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	promJobLabel = regexp.MustCompile(`\bjob\s*=\s*"([^"]*)"`)
)

// targetLabels are added to every series by Prometheus (job, instance) and by
// Kubernetes service discovery, not by roomcast.
var targetLabels = map[string]bool{"job": true, "instance": true, "namespace": true, "pod": true, "container": true, "service": true, "endpoint": true}

// checkPromQL checks one expression against the worker's registry: every
// roomcast metric it names is registered, and every label it matches or
// groups on is one that metric has (as far as the worker's series tell). It
// returns the metrics it names.
func checkPromQL(m *metricFacts, where, expr string, fs *findings) []string {
	bare := promString.ReplaceAllString(expr, `""`)
	var names []string
	for _, name := range promMetric.FindAllString(bare, -1) {
		if slices.Contains(names, name) {
			continue
		}
		names = append(names, name)
		if _, ok := m.family(name); !ok {
			fs.add("%s: %s is not a metric roomcast exports (in %q)", where, name, oneLine(expr))
		}
	}
	for _, sel := range promSelector.FindAllStringSubmatch(bare, -1) {
		ls, ok := m.labelsOf(sel[1])
		if !ok {
			continue
		}
		for _, mm := range promMatcher.FindAllStringSubmatch(sel[2], -1) {
			if l := mm[1]; !ls[l] && !targetLabels[l] {
				fs.add("%s: %s has no label %q (its labels: %s) (in %q)", where, sel[1], l, strings.Join(slices.Sorted(maps.Keys(ls)), ", "), oneLine(expr))
			}
		}
	}
	for _, g := range promGrouping.FindAllStringSubmatch(bare, -1) {
		for l := range strings.SplitSeq(g[1], ",") {
			l = strings.TrimSpace(l)
			if l == "" || targetLabels[l] {
				continue
			}
			found, unknown := false, false
			for _, name := range names {
				ls, ok := m.labelsOf(name)
				if !ok {
					unknown = true
					continue
				}
				found = found || ls[l]
			}
			if !found && !unknown {
				fs.add("%s: groups by %q, a label none of %s has (in %q)", where, l, strings.Join(names, ", "), oneLine(expr))
			}
		}
	}
	return names
}

// groupsBy reports whether expr aggregates by label.
func groupsBy(expr, label string) bool {
	for _, g := range promGrouping.FindAllStringSubmatch(promString.ReplaceAllString(expr, `""`), -1) {
		for l := range strings.SplitSeq(g[1], ",") {
			if strings.TrimSpace(l) == label {
				return true
			}
		}
	}
	return false
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// The Grafana dashboard, decoded with encoding/json (Grafana's own Go modules
// are AGPL): only the fields the checks read.
type grafanaDashboard struct {
	UID           string         `json:"uid"`
	Title         string         `json:"title"`
	SchemaVersion int            `json:"schemaVersion"`
	Panels        []grafanaPanel `json:"panels"`
	Templating    struct {
		List []grafanaVariable `json:"list"`
	} `json:"templating"`
}

type grafanaPanel struct {
	ID         int                `json:"id"`
	Type       string             `json:"type"`
	Title      string             `json:"title"`
	Datasource *grafanaDatasource `json:"datasource"`
	Targets    []grafanaTarget    `json:"targets"`
	Panels     []grafanaPanel     `json:"panels"` // a collapsed row's
}

type grafanaTarget struct {
	RefID      string             `json:"refId"`
	Expr       string             `json:"expr"`
	Datasource *grafanaDatasource `json:"datasource"`
}

type grafanaDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type grafanaVariable struct {
	Name       string             `json:"name"`
	Type       string             `json:"type"`
	Query      json.RawMessage    `json:"query"`
	Datasource *grafanaDatasource `json:"datasource"`
}

// dashboardMetrics are what the issue asks the dashboard to show, by the
// metric that shows it: throughput, lag, dead letters, Pusher calls by status,
// pending deliveries and their age. (The names are checked against the
// registry like every other.)
var dashboardMetrics = map[string]string{
	"throughput":            "roomcast_events_consumed_total",
	"lag":                   "roomcast_kafka_consumer_lag",
	"dead letters":          "roomcast_events_dead_lettered_total",
	"Pusher calls":          "roomcast_pusher_calls_total",
	"pending deliveries":    "roomcast_deliveries_pending",
	"age of the deliveries": "roomcast_deliveries_oldest_pending_seconds",
}

var (
	grafanaVarRef     = regexp.MustCompile(`\$\{([a-zA-Z0-9_]+)(?::[a-z]+)?\}|\$([a-zA-Z0-9_]+)|\[\[([a-zA-Z0-9_]+)\]\]`)
	grafanaLabelQuery = regexp.MustCompile(`^label_values\(\s*([^,]+?)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$`)
)

// checkDashboard checks deployments/grafana/*.json under root.
func checkDashboard(f *codeFacts, root string) findings {
	var fs findings
	paths, _ := filepath.Glob(filepath.Join(root, "deployments", "grafana", "*.json"))
	if len(paths) == 0 {
		fs.add("deployments/grafana: no dashboard")
	}
	for _, path := range paths {
		rel, _ := filepath.Rel(root, path)
		src, err := os.ReadFile(path)
		if err != nil {
			fs.add("%s: %v", rel, err)
			continue
		}
		checkDashboardJSON(f, rel, src, &fs)
	}
	return fs
}

func checkDashboardJSON(f *codeFacts, where string, src []byte, fs *findings) {
	var d grafanaDashboard
	dec := json.NewDecoder(bytes.NewReader(src))
	if err := dec.Decode(&d); err != nil {
		fs.add("%s: not a dashboard: %v", where, err)
		return
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion == 0 {
		fs.add("%s: uid, title and schemaVersion must be set", where)
	}
	vars := map[string]grafanaVariable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	builtin := func(name string) bool { return strings.HasPrefix(name, "__") }
	checkVars := func(at, s string) {
		for _, m := range grafanaVarRef.FindAllStringSubmatch(s, -1) {
			name := m[1] + m[2] + m[3]
			if _, ok := vars[name]; !ok && !builtin(name) {
				fs.add("%s: %s uses $%s, which is not one of the dashboard's variables", where, at, name)
			}
		}
	}
	checkDatasource := func(at string, ds *grafanaDatasource) {
		if ds == nil {
			return
		}
		if ds.Type != "prometheus" {
			fs.add("%s: %s: data source type %q, want prometheus", where, at, ds.Type)
		}
		checkVars(at, ds.UID)
	}
	for _, v := range d.Templating.List {
		at := "variable " + v.Name
		checkDatasource(at, v.Datasource)
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			_ = json.Unmarshal(v.Query, &q.Query) // the older form: a bare string
		}
		if m := grafanaLabelQuery.FindStringSubmatch(q.Query); m != nil {
			checkPromQL(f.metrics, where+": "+at, m[1]+" by ("+m[2]+")", fs)
		} else {
			fs.add("%s: %s: query %q is not label_values(metric, label)", where, at, q.Query)
		}
	}

	ids := map[int]string{}
	used := map[string]bool{}
	var walk func(ps []grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			at := fmt.Sprintf("panel %d %q", p.ID, p.Title)
			if prev, dup := ids[p.ID]; dup || p.ID <= 0 {
				fs.add("%s: %s: id not unique and positive (also %q)", where, at, prev)
			}
			ids[p.ID] = p.Title
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				fs.add("%s: %s has no query", where, at)
			}
			checkDatasource(at, p.Datasource)
			for _, tg := range p.Targets {
				tat := at + " query " + tg.RefID
				checkDatasource(tat, tg.Datasource)
				checkVars(tat, tg.Expr)
				if strings.TrimSpace(tg.Expr) == "" {
					fs.add("%s: %s is empty", where, tat)
				}
				for _, name := range checkPromQL(f.metrics, where+": "+tat, tg.Expr, fs) {
					used[name] = true
				}
				if strings.Contains(tg.Expr, "roomcast_pusher_calls_total") && groupsBy(tg.Expr, "status") {
					used["Pusher calls by status"] = true
				}
			}
		}
	}
	walk(d.Panels)
	for _, what := range slices.Sorted(maps.Keys(dashboardMetrics)) {
		if name := dashboardMetrics[what]; !used[name] {
			fs.add("%s: no panel shows %s (%s)", where, what, name)
		}
	}
	if !used["Pusher calls by status"] {
		fs.add("%s: no panel shows Pusher calls by status", where)
	}
}

// checkAlertDocs checks that every alert's runbook_url points at a section of
// deployments/README.md that exists.
func checkAlertDocs(root string, alerts map[string]string) findings {
	var fs findings
	readme, err := os.ReadFile(filepath.Join(root, "deployments", "README.md"))
	if err != nil {
		fs.add("deployments/README.md: %v", err)
		return fs
	}
	headings := map[string]bool{}
	for line := range strings.SplitSeq(string(readme), "\n") {
		if strings.HasPrefix(line, "#") {
			headings[strings.ToLower(strings.Trim(strings.TrimLeft(line, "# "), " `"))] = true
		}
	}
	for _, alert := range slices.Sorted(maps.Keys(alerts)) {
		url := alerts[alert]
		if !headings[strings.ToLower(alert)] {
			fs.add("deployments/README.md: no section %q says what the alert means", alert)
		}
		if !strings.HasSuffix(url, "deployments/README.md#"+strings.ToLower(alert)) {
			fs.add("alert %s: runbook_url %q does not point at its section of deployments/README.md", alert, url)
		}
	}
	return fs
}
