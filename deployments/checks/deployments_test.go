package checks

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/roomcast/roomcast/config"
)

// TestDeployments checks everything in deployments/ that can be checked
// without a Docker engine or a Kubernetes cluster against the code itself:
// every Kubernetes manifest, rendered by kustomize and decoded strictly into
// its API type; the compose file, loaded and validated by compose-go; the
// Dockerfile, parsed and linted by BuildKit; the systemd unit; the Grafana
// dashboard and the alerts. The settings, commands, port, probe paths,
// shutdown timeout and metric names they use are read from the code when the
// test runs (the roomcast binary, built from the repository: a running
// worker's /metrics and endpoints, the command lines it accepts; the settings
// config.Load reads), so what other changes add is checked too.
func TestDeployments(t *testing.T) {
	t.Parallel()
	f := newDeploymentFacts(t)
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]func(*codeFacts, string) findings{
		"kubernetes":   checkKubernetes,
		"compose":      checkCompose,
		"dockerfile":   checkDockerfile,
		"dockerignore": func(_ *codeFacts, dir string) findings { return checkDockerignore(root, dir) },
		"systemd":      checkSystemd,
		"grafana":      checkDashboard,
	}
	for _, name := range slices.Sorted(maps.Keys(checks)) {
		t.Run(name, func(t *testing.T) {
			for _, problem := range checks[name](f, root) {
				t.Error(problem)
			}
		})
	}

	// The checks can fail: each of these edits, made to a copy of
	// deployments/, must be caught.
	mutations := []struct {
		name, check, file, old, new string
		want                        string // in one of the findings
	}{
		{"misspelt Deployment field", "kubernetes", "kubernetes/base/deployment.yaml",
			"terminationGracePeriodSeconds: 45", "terminationGracePeriodSecond: 45", "unknown field"},
		{"misspelt ScaledObject field", "kubernetes", "kubernetes/components/keda/scaledobject.yaml",
			"cooldownPeriod: 300", "cooldownPeriods: 300", "unknown field"},
		{"misspelt ServiceMonitor field", "kubernetes", "kubernetes/components/prometheus-operator/servicemonitor.yaml",
			"scrapeTimeout: 10s", "scrapeTimout: 10s", "unknown field"},
		{"KEDA replicas above the partitions", "kubernetes", "kubernetes/overlays/production/scaledobject-patch.yaml",
			"value: 24", "value: 25", "more than the topic's 24 partitions"},
		{"KEDA replicas above the partitions (base)", "kubernetes", "kubernetes/components/keda/scaledobject.yaml",
			"maxReplicaCount: 12", "maxReplicaCount: 16", "more than the topic's 12 partitions"},
		{"fixed replicas above the partitions", "kubernetes", "kubernetes/overlays/minimal/deployment-patch.yaml",
			"replicas: 2", "replicas: 13", "more than the topic's 12 partitions"},
		{"a setting roomcast does not read", "kubernetes", "kubernetes/base/config.env",
			"LOG_FORMAT=json\n", "LOG_FORMAT=json\nKAFKA_BROKER=kafka:9092\n", "KAFKA_BROKER, which `roomcast run` does not read"},
		{"a secret in the ConfigMap", "kubernetes", "kubernetes/base/config.env",
			"LOG_FORMAT=json\n", "LOG_FORMAT=json\nPUSHER_SECRET=oops\n", "holds PUSHER_SECRET, a secret"},
		{"a probe path roomcast does not serve", "kubernetes", "kubernetes/base/deployment.yaml",
			"path: /readyz", "path: /ready", "GET /ready,"},
		{"grace period within SHUTDOWN_TIMEOUT", "kubernetes", "kubernetes/base/deployment.yaml",
			"terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: 30", "not longer than SHUTDOWN_TIMEOUT"},
		{"another port than HTTP_ADDR's", "kubernetes", "kubernetes/base/deployment.yaml",
			"containerPort: 8080", "containerPort: 8081", "declares no port 8080"},
		{"a migration command roomcast does not know", "kubernetes", "kubernetes/base/migrate-job.yaml",
			`args: ["migrate", "up"]`, `args: ["migrate", "sideways"]`, "not a command line roomcast accepts"},
		{"an alert on a metric not exported", "kubernetes", "kubernetes/components/prometheus-operator/prometheusrule.yaml",
			"max(roomcast_deliveries_parked) > 0", "max(roomcast_deliveries_parkd) > 0", "roomcast_deliveries_parkd is not a metric roomcast exports"},
		{"an alert on a label the metric lacks", "kubernetes", "kubernetes/components/prometheus-operator/prometheusrule.yaml",
			"sum by (topic) (roomcast_kafka_consumer_lag)", "sum by (room) (roomcast_kafka_consumer_lag)", `groups by "room"`},
		{"an alert without its section in the docs", "kubernetes", "README.md",
			"#### RoomcastDeadLetters\n", "#### Dead letters\n", `no section "RoomcastDeadLetters"`},
		{"KEDA watching another topic", "kubernetes", "kubernetes/components/keda/scaledobject.yaml",
			"topicFromEnv: KAFKA_TOPIC", "topicFromEnv: KAFKA_DLQ_TOPIC", "topic is"},
		{"KEDA with another SASL mechanism", "kubernetes", "kubernetes/overlays/production/scaledobject-patch.yaml",
			"value: scram_sha512", "value: plaintext", "sasl is"},
		{"a KEDA parameter misspelt", "kubernetes", "kubernetes/components/keda/scaledobject.yaml",
			`allowIdleConsumers: "false"`, `allowIdleConsumer: "false"`, `"allowIdleConsumer" is not a parameter`},
		{"no NetworkPolicy", "kubernetes", "kubernetes/base/kustomization.yaml",
			"  - networkpolicy.yaml\n", "", "Deployment roomcast: no NetworkPolicy selects its pods"},
		{"NetworkPolicy without the database's port", "kubernetes", "kubernetes/base/networkpolicy.yaml",
			"    # Postgres.\n    - ports:\n        - port: 5432", "    # Postgres.\n    - ports:\n        - port: 5433", "allow no egress to Postgres (DATABASE_URL) port 5432/TCP"},
		{"NetworkPolicy without a broker's port", "kubernetes", "kubernetes/base/networkpolicy.yaml",
			"        - port: 9096\n          protocol: TCP\n", "", "allow no egress to Kafka broker b-1.kafka.example.internal:9096 port 9096/TCP"},
		{"NetworkPolicy ingress on every port", "kubernetes", "kubernetes/base/networkpolicy.yaml",
			"      ports:\n        - port: http\n          protocol: TCP\n", "", "allows every port, want only HTTP_ADDR's 8080"},
		{"NetworkPolicy ingress from anywhere", "kubernetes", "kubernetes/base/networkpolicy.yaml",
			"    - from:\n        - namespaceSelector:\n            matchLabels:\n              kubernetes.io/metadata.name: monitoring\n      ports:", "    - ports:", "open to every source"},
		{"group instance id not the pod's name", "kubernetes", "kubernetes/base/deployment.yaml",
			"fieldPath: metadata.name", "fieldPath: metadata.uid", "must come from the pod's name"},
		{"no API Deployment", "kubernetes", "kubernetes/base/kustomization.yaml",
			"  - api-deployment.yaml\n", "", "no Deployment runs `roomcast api`"},
		{"an API probe path roomcast api does not serve", "kubernetes", "kubernetes/base/api-deployment.yaml",
			"path: /readyz", "path: /ready", "GET /ready, which a running `roomcast api`"},
		{"another API port than API_ADDR's", "kubernetes", "kubernetes/base/api-deployment.yaml",
			"containerPort: 8081", "containerPort: 8080", "declares no port 8081, API_ADDR's"},
		{"API grace period within SHUTDOWN_TIMEOUT and preStop", "kubernetes", "kubernetes/base/api-deployment.yaml",
			"terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds: 20", "plus its preStop sleep"},
		{"API signing for another Pusher app", "kubernetes", "kubernetes/base/api-deployment.yaml",
			"key: PUSHER_KEY", "key: PUSHER_CLUSTER", "PUSHER_KEY and PUSHER_SECRET are not the worker's"},
		{"API reading another database", "kubernetes", "kubernetes/base/api-secrets.env",
			"5432/roomcast?", "5432/elsewhere?", "but the worker writes roomcast"},
		{"API as the schema's owner", "kubernetes", "kubernetes/base/api-secrets.env",
			"roomcast_api:REPLACE_ME", "roomcast:REPLACE_ME", "connects as roomcast, the schema's owner"},
		{"API with two identity modes", "kubernetes", "kubernetes/base/api-secrets.env",
			"sslmode=verify-full\n", "sslmode=verify-full\nAPI_JWT_SECRET=a-secret-of-more-than-32-bytes-here\n", "set only one identity mode"},
		{"API NetworkPolicy without the key set's port", "kubernetes", "kubernetes/base/api-networkpolicy.yaml",
			"        - port: 443\n", "        - port: 8443\n", "allow no egress to the identity provider's key set (API_JWKS_URL) port 443/TCP"},
		{"HPA on the worker", "kubernetes", "kubernetes/components/api-autoscaling/horizontalpodautoscaler.yaml",
			"    kind: Deployment\n    name: roomcast-api", "    kind: Deployment\n    name: roomcast", "scales the worker"},
		{"HPA down to one API pod", "kubernetes", "kubernetes/components/api-autoscaling/horizontalpodautoscaler.yaml",
			"minReplicas: 2", "minReplicas: 1", "minReplicas must be at least 2"},
		{"API without autoscaler or replicas", "kubernetes", "kubernetes/overlays/minimal/api-deployment-patch.yaml",
			"  replicas: 2\n", "", "neither autoscaled nor given 2 replicas"},
		{"API without PodDisruptionBudget", "kubernetes", "kubernetes/base/kustomization.yaml",
			"  - api-poddisruptionbudget.yaml\n", "", "no PodDisruptionBudget selects the pods of Deployment roomcast-api"},
		{"API alert on a job nothing scrapes", "kubernetes", "kubernetes/components/prometheus-operator/prometheusrule.yaml",
			`up{job="roomcast-api"}`, `up{job="roomcast-apis"}`, `matches job="roomcast-apis"`},
		{"misspelt compose key", "compose", "compose.yaml",
			"stop_grace_period: 40s", "stop_grace_periods: 40s", "stop_grace_periods"},
		{"compose setting roomcast does not read", "compose", "compose.yaml",
			"      LOG_LEVEL: info\n", "      LOG_LEVEL: info\n      LOG_LEVL: debug\n", "LOG_LEVL, which `roomcast run` does not read"},
		{"compose grace period within SHUTDOWN_TIMEOUT", "compose", "compose.yaml",
			"stop_grace_period: 40s", "stop_grace_period: 30s", "stop_grace_period 30s"},
		{"compose Pusher credentials that soketi does not have", "compose", "compose.yaml",
			"SOKETI_DEFAULT_APP_SECRET: roomcast-secret", "SOKETI_DEFAULT_APP_SECRET: another-secret", "SOKETI_DEFAULT_APP_ID"},
		{"compose health check command roomcast does not have", "compose", "compose.yaml",
			`test: ["CMD", "/roomcast", "healthcheck"]`, `test: ["CMD", "/roomcast", "health"]`, `"health" is not one of the commands`},
		{"compose API health check asking the worker's port", "compose", "compose.yaml",
			`test: ["CMD", "/roomcast", "healthcheck", "-api"]`, `test: ["CMD", "/roomcast", "healthcheck"]`, "fails against a running `roomcast api`"},
		{"compose API signing for another app", "compose", "compose.yaml",
			"      PUSHER_SECRET: roomcast-secret\n      API_ADDR", "      PUSHER_SECRET: another-secret\n      API_ADDR", "are not service roomcast's"},
		{"compose API port not published", "compose", "compose.yaml",
			`"8081:8081"`, `"8082:8082"`, "publishes no port 8081, API_ADDR's"},
		{"compose API before the migration", "compose", "compose.yaml",
			"    depends_on:\n      migrate:\n        condition: service_completed_successfully\n    ports:\n      - \"8081",
			"    depends_on:\n      migrate:\n        condition: service_started\n    ports:\n      - \"8081", "refuses a schema not migrated"},
		{"image not exposing the API's port", "dockerfile", "Dockerfile",
			"EXPOSE 8080 8081", "EXPOSE 8080", "API_ADDR's port 8081"},
		{"image health check command roomcast does not have", "dockerfile", "Dockerfile",
			`CMD ["/roomcast", "healthcheck"]`, `CMD ["/roomcast", "healthz"]`, `"healthz" is not one of the commands`},
		{"image running as root", "dockerfile", "Dockerfile",
			"USER 65532:65532", "USER root", "not a numeric non-root uid"},
		{"image exposing another port", "dockerfile", "Dockerfile",
			"EXPOSE 8080", "EXPOSE 9090", "does not include HTTP_ADDR's port 8080"},
		{"image command roomcast does not have", "dockerfile", "Dockerfile",
			`CMD ["run"]`, `CMD ["serve"]`, `"serve" is not one of the commands`},
		{"image base by tag only", "dockerfile", "Dockerfile",
			"nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab", "nonroot", `"gcr.io/distroless/static-debian12:nonroot" is not pinned by digest`},
		{"build image by digest without its tag", "dockerfile", "Dockerfile",
			"golang:1.26.9-bookworm@sha256:", "golang@sha256:", "needs its tag beside it"},
		{"Dockerfile frontend by tag only", "dockerfile", "Dockerfile",
			"# syntax=docker/dockerfile:1@sha256:4edf897a3ffa55b89f906fc8cc78afdb3f1834cc9c7083565e611a8a7d5fe99e", "# syntax=docker/dockerfile:1", `"docker/dockerfile:1" is not pinned by digest`},
		{"compose image by tag only", "compose", "compose.yaml",
			"postgres:15.19@sha256:724292da1f2e50bdccfc3302ce75bbba7f4a6076701b588cc795fcac65683550", "postgres:15.19", `service postgres: image "postgres:15.19" is not pinned`},
		{"build context without the sources", "dockerignore", "Dockerfile.dockerignore",
			"bench-results\n", "bench-results\ncmd\n", "leaves cmd/roomcast/main.go"},
		{"systemd stop timeout within SHUTDOWN_TIMEOUT", "systemd", "systemd/roomcast.service",
			"TimeoutStopSec=45s", "TimeoutStopSec=20s", "TimeoutStopSec 20s is not longer"},
		{"systemd setting roomcast does not read", "systemd", "systemd/roomcast.env",
			"LOG_FORMAT=text\n", "LOG_FORMAT=text\nPUSHER_SECERT=x\n", "PUSHER_SECERT, which"},
		{"systemd restart policy", "systemd", "systemd/roomcast.service",
			"Restart=on-failure", "Restart=always", "Restart=always"},
		{"systemd without ProtectSystem=strict", "systemd", "systemd/roomcast.service",
			"ProtectSystem=strict", "ProtectSystem=full", "ProtectSystem=full"},
		{"systemd API unit running the worker", "systemd", "systemd/roomcast-api.service",
			"ExecStart=/usr/local/bin/roomcast api", "ExecStart=/usr/local/bin/roomcast run", "does not run `roomcast api`"},
		{"systemd API setting roomcast does not read", "systemd", "systemd/roomcast-api.env",
			"LOG_FORMAT=text\n", "LOG_FORMAT=text\nAPI_CORS_ORIGIN=https://chat.example.com\n", "API_CORS_ORIGIN, which"},
		{"systemd API as the schema's owner", "systemd", "systemd/roomcast-api.env",
			"roomcast_api:REPLACE_ME", "roomcast:REPLACE_ME", "the schema's owner"},
		{"systemd API signing for another app", "systemd", "systemd/roomcast-api.env",
			"PUSHER_SECRET=REPLACE_ME", "PUSHER_SECRET=ANOTHER", "not roomcast.env's"},
		{"dashboard metric not exported", "grafana", "grafana/roomcast.json",
			"rate(roomcast_events_consumed_total{", "rate(roomcast_events_consumd_total{", "roomcast_events_consumd_total is not a metric roomcast exports"},
		{"dashboard grouping by a label the metric lacks", "grafana", "grafana/roomcast.json",
			"sum by (status) (rate(roomcast_pusher_calls_total", "sum by (code) (rate(roomcast_pusher_calls_total", `groups by "code"`},
	}
	// So can the parts of the configuration each command is taken to
	// validate: they are checked against what the binary reports.
	t.Run("commands", func(t *testing.T) {
		wrong := &codeFacts{bin: f.bin, commands: map[string][]config.Need{"migrate": {config.Database, config.HTTP}}, reads: map[string]map[string]bool{}}
		if _, err := wrong.command([]string{"migrate", "up"}); err == nil || !strings.Contains(err.Error(), "deployableCommands is out of date") {
			t.Errorf("migrate taken to need the database and HTTP went unnoticed: %v", err)
		}
		// healthcheck -api validates what the API does, not HTTP_ADDR.
		wrong.commands["healthcheck"] = []config.Need{config.HTTP}
		if _, err := wrong.command([]string{"healthcheck", "-api"}); err == nil || !strings.Contains(err.Error(), "deployableCommands is out of date") {
			t.Errorf("healthcheck -api taken to need HTTP went unnoticed: %v", err)
		}
	})
	t.Run("mutations", func(t *testing.T) {
		for _, m := range mutations {
			t.Run(m.name, func(t *testing.T) {
				dir := mutatedCopy(t, root, m.file, m.old, m.new)
				got := checks[m.check](f, dir)
				for _, problem := range got {
					if strings.Contains(problem, m.want) {
						return
					}
				}
				t.Errorf("%s: %q -> %q went unnoticed; want a finding with %q, got:\n%s",
					m.file, m.old, m.new, m.want, strings.Join(got, "\n"))
			})
		}
	})
}

// mutatedCopy copies root's deployments/ into a temporary directory and
// replaces old with new in deployments/file there; old must occur exactly
// once, so that a mutation that no longer applies fails rather than passes.
func mutatedCopy(t *testing.T, root, file, old, new string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "deployments"), os.DirFS(filepath.Join(root, "deployments"))); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "deployments", file)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), old); n != 1 {
		t.Fatalf("deployments/%s has %q %d times, want once: update the mutation", file, old, n)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}
