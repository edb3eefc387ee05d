package alerts

import (
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/rules"
	"go.yaml.in/yaml/v3"
)

// ruleFile is the PrometheusRule the Prometheus Operator deploys.
const ruleFile = "../kubernetes/components/prometheus-operator/prometheusrule.yaml"

// evalInterval is how often Prometheus evaluates the group (its global
// evaluation_interval; the group sets none).
const evalInterval = time.Minute

// loadRules reads the PrometheusRule's groups and parses them as Prometheus
// does a rule file (`promtool check rules`): unknown fields, bad
// expressions and templates are errors.
func loadRules(t *testing.T) []rulefmt.Rule {
	t.Helper()
	src, err := os.ReadFile(ruleFile)
	if err != nil {
		t.Fatal(err)
	}
	var obj struct {
		Spec struct {
			Groups yaml.Node `yaml:"groups"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(src, &obj); err != nil {
		t.Fatalf("%s: %v", ruleFile, err)
	}
	groups, err := yaml.Marshal(map[string]*yaml.Node{"groups": &obj.Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	rgs, errs := rulefmt.Parse(groups, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, err := range errs {
		t.Errorf("%s: %v", ruleFile, err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	var out []rulefmt.Rule
	for _, g := range rgs.Groups {
		if g.Interval != 0 && time.Duration(g.Interval) != evalInterval {
			t.Fatalf("group %s has interval %v; the tests evaluate every %v", g.Name, g.Interval, evalInterval)
		}
		out = append(out, g.Rules...)
	}
	return out
}

// at is one expectation: at this time since the first sample, the alert is
// firing (with these labels among its own) or not.
type at struct {
	t      time.Duration
	firing bool
	labels map[string]string
}

// alertCase loads series (promqltest's notation, one sample a minute from
// time 0) and evaluates the alert every evalInterval up to the last
// expectation, with its `for`.
type alertCase struct {
	alert, name string
	series      string
	want        []at
}

func TestAlertRules(t *testing.T) {
	all := loadRules(t)
	byName := map[string]rulefmt.Rule{}
	for _, r := range all {
		if r.Alert != "" {
			byName[r.Alert] = r
		}
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, c := range alertCases {
		r, ok := byName[c.alert]
		if !ok {
			t.Errorf("case %q: no alert %s in %s", c.name, c.alert, ruleFile)
			continue
		}
		t.Run(c.alert+"/"+c.name, func(t *testing.T) { evaluate(t, r, c) })
		if slices.ContainsFunc(c.want, func(w at) bool { return w.firing }) {
			fires[c.alert] = true
		} else {
			quiet[c.alert] = true
		}
	}
	// Every alert is shown to fire in some case, and to stay quiet in another.
	for name := range byName {
		if !fires[name] || !quiet[name] {
			t.Errorf("alert %s needs a case where it fires and one where it does not (has firing %v, quiet %v)", name, fires[name], quiet[name])
		}
	}
}

func evaluate(t *testing.T, r rulefmt.Rule, c alertCase) {
	load := "load 1m\n"
	for l := range strings.SplitSeq(strings.TrimSpace(c.series), "\n") {
		load += "  " + strings.TrimSpace(l) + "\n"
	}
	storage := promqltest.LoadedStorage(t, load)
	engine := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr)
	if err != nil {
		t.Fatalf("%s: %v", r.Expr, err)
	}
	rule := rules.NewAlertingRule(r.Alert, expr, time.Duration(r.For), time.Duration(r.KeepFiringFor),
		labels.FromMap(r.Labels), labels.FromMap(r.Annotations), labels.EmptyLabels(), "", true,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	query := rules.EngineQueryFunc(engine, storage)
	end := slices.MaxFunc(c.want, func(a, b at) int { return int(a.t - b.t) }).t
	next := 0
	for ts := time.Duration(0); ts <= end; ts += evalInterval {
		if _, err := rule.Eval(t.Context(), 0, time.Unix(0, 0).UTC().Add(ts), query, nil, 0); err != nil {
			t.Fatalf("at %v: %v", ts, err)
		}
		for next < len(c.want) && c.want[next].t <= ts {
			w := c.want[next]
			next++
			var firing []string
			match := false
			for _, a := range rule.ActiveAlerts() {
				if a.State != rules.StateFiring {
					continue
				}
				firing = append(firing, a.Labels.String())
				ok := true
				for k, v := range w.labels {
					ok = ok && a.Labels.Get(k) == v
				}
				match = match || ok
			}
			switch {
			case w.firing && !match:
				t.Errorf("at %v: %s is not firing with %v (firing: %v); expr %s, for %v", w.t, r.Alert, w.labels, firing, oneLine(r.Expr), r.For)
			case !w.firing && len(firing) > 0:
				t.Errorf("at %v: %s fires %v, want it quiet; expr %s, for %v", w.t, r.Alert, firing, oneLine(r.Expr), r.For)
			}
		}
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
