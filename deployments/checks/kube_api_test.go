package checks

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/roomcast/roomcast/config"
)

// The Deployments of roomcast's two long-running commands, and what is
// checked of the API's beyond what every Deployment shares: that it signs
// for the worker's Pusher app and reads the worker's database, not as the
// schema's owner; its NetworkPolicies; its autoscaler.

// workload is a Deployment running `roomcast run` (the worker, listening
// on HTTP_ADDR) or `roomcast api` (on API_ADDR).
type workload struct {
	command string // run or api
	addrVar string // HTTP_ADDR or API_ADDR
	d       *appsv1.Deployment
	c       *corev1.Container
	cfg     config.Config // what the container's environment configures
	ok      bool          // cfg is a valid configuration
}

// newWorkload returns the workload d runs, or nil when it runs neither.
func newWorkload(d *appsv1.Deployment) *workload {
	pod := &d.Spec.Template.Spec
	if c := containerRunning(pod, "run"); c != nil {
		return &workload{command: "run", addrVar: "HTTP_ADDR", d: d, c: c}
	}
	if c := containerRunning(pod, "api"); c != nil {
		return &workload{command: "api", addrVar: "API_ADDR", d: d, c: c}
	}
	return nil
}

func (w *workload) labels() labels.Set { return labels.Set(w.d.Spec.Template.Labels) }

// addr is the address the workload's configuration listens on.
func (w *workload) addr() string {
	if w.command == "api" {
		return w.cfg.API.Addr
	}
	return w.cfg.HTTPAddr
}

// port is addr's port (-1 without one).
func (w *workload) port() int {
	_, p, err := net.SplitHostPort(w.addr())
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return -1
	}
	return n
}

// preStopSleep is how long c's preStop hook sleeps before the kubelet
// sends SIGTERM (0 without one).
func preStopSleep(c *corev1.Container) time.Duration {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		return 0
	}
	return time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
}

// checkAPI checks the API's Deployment against the worker's and the
// migration's (whose configuration is migration), its NetworkPolicies and
// its autoscaler.
func (ks *kubeSet) checkAPI(worker, api *workload, migration config.Config, fs *findings) {
	at := fmt.Sprintf("%s: Deployment %s", ks.where, api.d.Name)
	if api.c.Image != worker.c.Image {
		fs.add("%s: image %q is not the worker's %q: the API must read the schema that version writes", at, api.c.Image, worker.c.Image)
	}
	if api.ok && worker.ok {
		if api.cfg.Pusher.Key != worker.cfg.Pusher.Key || api.cfg.Pusher.Secret != worker.cfg.Pusher.Secret {
			fs.add("%s: PUSHER_KEY and PUSHER_SECRET are not the worker's: it would sign channel authorizations for another Pusher app than the one the worker publishes to", at)
		}
		checkAPIDatabase(at, worker.cfg.DatabaseURL, api.cfg.DatabaseURL, migration.DatabaseURL, fs)
	}
	if api.ok {
		ks.checkNetworkPolicies(at, api.labels(), api.c, egressPorts(api.cfg, false, false), api.port(), api.addrVar, fs)
	}
	scaled := false
	for _, h := range ks.hpas {
		scaled = ks.checkHPA(h, worker, api, fs) || scaled
	}
	if scaled && api.d.Spec.Replicas != nil {
		fs.add("%s: sets replicas, which every `kubectl apply` would reset under the HorizontalPodAutoscaler", at)
	}
	if !scaled && ks.deployable && (api.d.Spec.Replicas == nil || *api.d.Spec.Replicas < 2) {
		fs.add("%s: neither autoscaled nor given 2 replicas or more: a drain or a crash would leave no API", at)
	}
}

// checkAPIDatabase checks that the API reads the database the worker writes
// (a role of its own allowed) and not as the schema's owner, the
// migration's role (ownerURL; "": not checked).
func checkAPIDatabase(at, workerURL, apiURL, ownerURL string, fs *findings) {
	w, errW := pgconn.ParseConfig(workerURL)
	a, errA := pgconn.ParseConfig(apiURL)
	if errW != nil || errA != nil {
		return // reported with the configuration
	}
	if a.Host != w.Host || a.Port != w.Port || a.Database != w.Database {
		fs.add("%s: DATABASE_URL names database %s on %s:%d, but the worker writes %s on %s:%d", at, a.Database, a.Host, a.Port, w.Database, w.Host, w.Port)
	}
	if o, err := pgconn.ParseConfig(ownerURL); ownerURL != "" && err == nil && o.User == a.User {
		fs.add("%s: DATABASE_URL connects as %s, the schema's owner (the migration's role): give the API the read-only role of deployments/postgres/runtime-role.sql", at, a.User)
	}
}

// checkHPA checks a HorizontalPodAutoscaler: it scales the API (the worker
// scales on Kafka lag, with KEDA), on CPU, from at least 2 replicas. It
// reports whether it scales the API.
func (ks *kubeSet) checkHPA(h *autoscalingv2.HorizontalPodAutoscaler, worker, api *workload, fs *findings) bool {
	at := fmt.Sprintf("%s: HorizontalPodAutoscaler %s", ks.where, h.Name)
	ref := h.Spec.ScaleTargetRef
	switch {
	case ref.Kind != "Deployment" || ref.APIVersion != "apps/v1":
		fs.add("%s: scales a %s %s, not the API's Deployment", at, ref.APIVersion, ref.Kind)
		return false
	case ref.Name == worker.d.Name:
		fs.add("%s: scales the worker, whose replicas follow Kafka's lag (components/keda) and stay within the partition count", at)
		return false
	case ref.Name != api.d.Name:
		fs.add("%s: scaleTargetRef names Deployment %q, which is not in the manifests", at, ref.Name)
		return false
	}
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 {
		fs.add("%s: minReplicas must be at least 2, so that a drain or a crash leaves one answering", at)
	} else if h.Spec.MaxReplicas < *h.Spec.MinReplicas {
		fs.add("%s: maxReplicas %d is below minReplicas %d", at, h.Spec.MaxReplicas, *h.Spec.MinReplicas)
	}
	onCPU := slices.ContainsFunc(h.Spec.Metrics, func(m autoscalingv2.MetricSpec) bool {
		return m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil && m.Resource.Name == corev1.ResourceCPU &&
			m.Resource.Target.Type == autoscalingv2.UtilizationMetricType && m.Resource.Target.AverageUtilization != nil
	})
	if !onCPU {
		fs.add("%s: does not scale on the pods' CPU utilization", at)
	}
	return true
}
