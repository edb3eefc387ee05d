package checks

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/roomcast/roomcast/config"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	sigsyaml "sigs.k8s.io/yaml"
)

// partitionsAnnotation declares, on the worker Deployment, the partition count
// of KAFKA_TOPIC: no more replicas than that can consume.
const partitionsAnnotation = "roomcast/kafka-topic-partitions"

// kubeCodecs decodes the Kubernetes API types the manifests use, strictly: an
// unknown (misspelt) or duplicated field is an error, as with
// `kubectl apply --validate=strict`.
var kubeCodecs = func() serializer.CodecFactory {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme, policyv1.AddToScheme, monitoringv1.AddToScheme,
		networkingv1.AddToScheme, autoscalingv2.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(s, serializer.EnableStrict)
}()

// decodeKube decodes one rendered object strictly into its API type: the
// Kubernetes and Prometheus Operator types, or the KEDA mirrors.
func decodeKube(y []byte, apiVersion, kind string) (any, error) {
	switch apiVersion + "/" + kind {
	case "keda.sh/v1alpha1/ScaledObject":
		var so kedaScaledObject
		return &so, sigsyaml.UnmarshalStrict(y, &so)
	case "keda.sh/v1alpha1/TriggerAuthentication":
		var ta kedaTriggerAuthentication
		return &ta, sigsyaml.UnmarshalStrict(y, &ta)
	}
	obj, _, err := kubeCodecs.UniversalDeserializer().Decode(y, nil, nil)
	return obj, err
}

// kustomizations lists the directories under deployments/kubernetes that
// `kubectl kustomize` builds: the base and every overlay. (Components are
// built through the overlays that include them.)
func kustomizations(root string) (base string, overlays []string) {
	kdir := filepath.Join(root, "deployments", "kubernetes")
	overlays, _ = filepath.Glob(filepath.Join(kdir, "overlays", "*", "kustomization.yaml"))
	for i, o := range overlays {
		overlays[i] = filepath.Dir(o)
	}
	return filepath.Join(kdir, "base"), overlays
}

// kubeSet is one rendered kustomization, decoded.
type kubeSet struct {
	where       string
	deployable  bool // an overlay: what an operator applies
	kinds       map[string]bool
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	deployments []*appsv1.Deployment
	jobs        []*batchv1.Job
	services    []*corev1.Service
	pdbs        []*policyv1.PodDisruptionBudget
	netpols     []*networkingv1.NetworkPolicy
	monitors    []*monitoringv1.ServiceMonitor
	rules       []*monitoringv1.PrometheusRule
	scaled      []*kedaScaledObject
	auths       map[string]*kedaTriggerAuthentication
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
}

// renderKustomization builds dir as `kubectl kustomize dir` does and decodes
// every object strictly.
func renderKustomization(root, dir string, fs *findings) *kubeSet {
	where, _ := filepath.Rel(root, dir)
	ks := &kubeSet{
		where: where, deployable: filepath.Base(filepath.Dir(dir)) == "overlays", kinds: map[string]bool{},
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}, auths: map[string]*kedaTriggerAuthentication{},
	}
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		fs.add("%s: kustomize: %v", where, err)
		return ks
	}
	for _, r := range resources.Resources() {
		at := fmt.Sprintf("%s: %s %s", where, r.GetKind(), r.GetName())
		y, err := r.AsYAML()
		if err != nil {
			fs.add("%s: %v", at, err)
			continue
		}
		obj, err := decodeKube(y, r.GetApiVersion(), r.GetKind())
		if err != nil {
			fs.add("%s: does not decode strictly into %s %s: %v", at, r.GetApiVersion(), r.GetKind(), err)
			continue
		}
		ks.kinds[r.GetKind()] = true
		switch o := obj.(type) {
		case *corev1.ConfigMap:
			ks.configMaps[o.Name] = o
		case *corev1.Secret:
			ks.secrets[o.Name] = o
		case *appsv1.Deployment:
			ks.deployments = append(ks.deployments, o)
		case *batchv1.Job:
			ks.jobs = append(ks.jobs, o)
		case *corev1.Service:
			ks.services = append(ks.services, o)
		case *policyv1.PodDisruptionBudget:
			ks.pdbs = append(ks.pdbs, o)
		case *networkingv1.NetworkPolicy:
			ks.netpols = append(ks.netpols, o)
		case *monitoringv1.ServiceMonitor:
			ks.monitors = append(ks.monitors, o)
		case *monitoringv1.PrometheusRule:
			ks.rules = append(ks.rules, o)
		case *kedaScaledObject:
			ks.scaled = append(ks.scaled, o)
		case *kedaTriggerAuthentication:
			ks.auths[o.Name] = o
		case *autoscalingv2.HorizontalPodAutoscaler:
			ks.hpas = append(ks.hpas, o)
		case *corev1.ServiceAccount, *corev1.Namespace:
		default:
			fs.add("%s: a %T the checks do not know", at, obj)
		}
	}
	return ks
}

// checkKubernetes renders the base and every overlay under root and checks
// them against the code, and the alerts against their documentation.
func checkKubernetes(f *codeFacts, root string) findings {
	var fs findings
	alerts := map[string]string{}
	base, overlays := kustomizations(root)
	if len(overlays) == 0 {
		fs.add("deployments/kubernetes/overlays: no overlay")
	}
	covered := map[string]bool{}
	for _, dir := range append([]string{base}, overlays...) {
		ks := renderKustomization(root, dir, &fs)
		ks.check(f, &fs, alerts)
		if ks.deployable {
			for kind := range ks.kinds {
				covered[kind] = true
			}
		}
	}
	// The components are checked through the overlays that include them.
	for _, kind := range []string{"ScaledObject", "ServiceMonitor", "PrometheusRule", "HorizontalPodAutoscaler"} {
		if !covered[kind] {
			fs.add("deployments/kubernetes: no overlay has a %s", kind)
		}
	}
	return append(fs, checkAlertDocs(root, alerts)...)
}

func (ks *kubeSet) check(f *codeFacts, fs *findings, alerts map[string]string) {
	for _, kind := range []string{"Deployment", "Job", "ConfigMap", "Secret", "PodDisruptionBudget", "Service", "NetworkPolicy"} {
		if !ks.kinds[kind] {
			fs.add("%s: has no %s", ks.where, kind)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(ks.configMaps)) {
		for key := range ks.configMaps[name].Data {
			if isSecretSetting(key) {
				fs.add("%s: ConfigMap %s holds %s, a secret: it belongs in a Secret", ks.where, name, key)
			}
		}
	}
	var worker, api *workload
	for _, d := range ks.deployments {
		w := newWorkload(d)
		if w == nil {
			fs.add("%s: Deployment %s runs neither `roomcast run` nor `roomcast api`", ks.where, d.Name)
			continue
		}
		slot := &worker
		if w.command == "api" {
			slot = &api
		}
		if *slot != nil {
			fs.add("%s: two Deployments run `roomcast %s` (%s, %s)", ks.where, w.command, (*slot).d.Name, d.Name)
		}
		*slot = w
		w.cfg, w.ok = ks.checkDeployment(f, w, fs)
	}
	if worker == nil {
		return
	}
	workloads := []*workload{worker}
	migration, _ := ks.checkMigration(f, worker.d, worker.c, fs)
	if api == nil {
		fs.add("%s: no Deployment runs `roomcast api`", ks.where)
	} else {
		workloads = append(workloads, api)
		ks.checkAPI(worker, api, migration, fs)
	}
	ks.checkPDBs(workloads, fs)
	at := fmt.Sprintf("%s: Deployment %s", ks.where, worker.d.Name)
	checkStaticMembership(ks.where, worker.d, worker.c, fs)
	if worker.cfg.DatabaseURL != "" {
		ks.checkNetworkPolicies(at, worker.labels(), worker.c, egressPorts(worker.cfg, true, true), worker.port(), worker.addrVar, fs)
	}
	jobs, monitored := ks.checkServices(f, workloads, fs)
	ks.checkRules(f, jobs, fs, alerts)
	for _, so := range ks.scaled {
		ks.checkScaledObject(f, so, fs)
	}
	for _, w := range workloads {
		scraped := monitored[w] || w.d.Spec.Template.Annotations["prometheus.io/scrape"] == "true"
		if ks.deployable && !scraped {
			fs.add("%s: nothing scrapes the /metrics of Deployment %s: neither a ServiceMonitor nor prometheus.io/scrape annotations", ks.where, w.d.Name)
		}
	}
}

// checkPDBs checks that each PodDisruptionBudget selects the pods of one
// workload, and that each workload has one.
func (ks *kubeSet) checkPDBs(workloads []*workload, fs *findings) {
	covered := map[*workload]bool{}
	for _, p := range ks.pdbs {
		at := fmt.Sprintf("%s: PodDisruptionBudget %s", ks.where, p.Name)
		var selected []*workload
		for _, w := range workloads {
			if selects(p.Spec.Selector, w.labels()) {
				selected = append(selected, w)
				covered[w] = true
			}
		}
		if len(selected) != 1 {
			fs.add("%s: its selector selects the pods of %d roomcast Deployments, want exactly one", at, len(selected))
		}
		if p.Spec.MinAvailable == nil && p.Spec.MaxUnavailable == nil {
			fs.add("%s: sets neither minAvailable nor maxUnavailable", at)
		}
	}
	for _, w := range workloads {
		if !covered[w] {
			fs.add("%s: no PodDisruptionBudget selects the pods of Deployment %s", ks.where, w.d.Name)
		}
	}
}

// containerRunning returns the container of pod whose arguments start with command.
func containerRunning(pod *corev1.PodSpec, command string) *corev1.Container {
	for i := range pod.Containers {
		if c := &pod.Containers[i]; len(c.Args) > 0 && c.Args[0] == command {
			return c
		}
	}
	return nil
}

func selects(sel *metav1.LabelSelector, set labels.Set) bool {
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && !s.Empty() && s.Matches(set)
}

// checkDeployment checks the Deployment of a workload (the worker or the
// API) and returns the configuration it gives roomcast.
func (ks *kubeSet) checkDeployment(f *codeFacts, w *workload, fs *findings) (config.Config, bool) {
	d, c := w.d, w.c
	at := fmt.Sprintf("%s: Deployment %s", ks.where, d.Name)
	pod := &d.Spec.Template.Spec
	cfg, ok := ks.checkContainer(f, at, pod, c, fs)
	if !ok {
		return cfg, false
	}
	w.cfg = cfg
	grace := 30 * time.Second // Kubernetes' default
	if pod.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	}
	if w.command == "run" && grace <= cfg.ShutdownTimeout+httpShutdownGrace {
		fs.add("%s: terminationGracePeriodSeconds is %v, not longer than SHUTDOWN_TIMEOUT (%v) plus the %v the HTTP server may take to close",
			at, grace, cfg.ShutdownTimeout, httpShutdownGrace)
	}
	if sleep := preStopSleep(c); w.command == "api" && grace <= cfg.ShutdownTimeout+sleep {
		fs.add("%s: terminationGracePeriodSeconds is %v, not longer than SHUTDOWN_TIMEOUT (%v) plus its preStop sleep (%v): requests in flight would be cut",
			at, grace, cfg.ShutdownTimeout, sleep)
	}
	port := w.port()
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return int(p.ContainerPort) == port }) {
		fs.add("%s: container %s declares no port %d, %s's (%s)", at, c.Name, port, w.addrVar, w.addr())
	}
	probes := []struct {
		kind     string
		probe    *corev1.Probe
		required bool
	}{{"livenessProbe", c.LivenessProbe, true}, {"readinessProbe", c.ReadinessProbe, true}, {"startupProbe", c.StartupProbe, false}}
	paths := map[string]string{}
	for _, p := range probes {
		switch {
		case p.probe == nil && p.required:
			fs.add("%s: container %s has no %s", at, c.Name, p.kind)
		case p.probe == nil:
		case p.probe.HTTPGet == nil:
			fs.add("%s: %s is not an httpGet probe of roomcast's /healthz or /readyz", at, p.kind)
		default:
			get := p.probe.HTTPGet
			if got := containerPort(c, get.Port); got != port {
				fs.add("%s: %s asks port %s (%d), not %s's %d", at, p.kind, get.Port.String(), got, w.addrVar, port)
			}
			paths[p.kind] = get.Path
			if code, body, err := f.getFrom(w.command, get.Path); err != nil || code != 200 {
				fs.add("%s: %s asks GET %s, which a running `roomcast %s` answers %d %q (%v)", at, p.kind, get.Path, w.command, code, strings.TrimSpace(body), err)
			}
		}
	}
	// Liveness must not depend on Kafka, Postgres or Pusher, or an outage of
	// one restarts every pod: it asks another endpoint than readiness.
	if paths["livenessProbe"] != "" && paths["livenessProbe"] == paths["readinessProbe"] {
		fs.add("%s: livenessProbe and readinessProbe both ask %s", at, paths["livenessProbe"])
	}
	if w.command == "run" {
		parts, err := strconv.Atoi(d.Annotations[partitionsAnnotation])
		if err != nil || parts <= 0 {
			fs.add("%s: annotation %s must give the topic's partition count (got %q)", at, partitionsAnnotation, d.Annotations[partitionsAnnotation])
		} else if d.Spec.Replicas != nil && int(*d.Spec.Replicas) > parts {
			fs.add("%s: replicas %d is more than the topic's %d partitions", at, *d.Spec.Replicas, parts)
		}
	}
	if ann := d.Spec.Template.Annotations; ann["prometheus.io/scrape"] == "true" {
		if ann["prometheus.io/port"] != strconv.Itoa(port) {
			fs.add("%s: prometheus.io/port is %q, not %s's port %d", at, ann["prometheus.io/port"], w.addrVar, port)
		}
		path := cmpOr(ann["prometheus.io/path"], "/metrics")
		if code, body, _ := f.getFrom(w.command, path); code != 200 || !strings.Contains(body, "roomcast_") {
			fs.add("%s: prometheus.io/path %s is not roomcast's metrics (GET answers %d)", at, path, code)
		}
	}
	return cfg, true
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// containerPort resolves a probe's or a Service's port (a number or a port
// name of c) to a number (-1 when it names no port of c).
func containerPort(c *corev1.Container, p intstr.IntOrString) int {
	if p.Type == intstr.Int {
		return p.IntValue()
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort)
		}
	}
	return -1
}

// checkContainer checks what every roomcast container shares: a real
// command, an environment of real settings with the secrets from a Secret,
// a locked-down security context, resource requests and limits.
func (ks *kubeSet) checkContainer(f *codeFacts, at string, pod *corev1.PodSpec, c *corev1.Container, fs *findings) (config.Config, bool) {
	at = fmt.Sprintf("%s container %s", at, c.Name)
	if len(c.Command) > 0 && !slices.Equal(c.Command, []string{"/roomcast"}) {
		fs.add("%s: command %v replaces the image's entrypoint /roomcast", at, c.Command)
	}
	env, fromSecret := ks.containerEnv(at, c, fs)
	for _, name := range slices.Sorted(maps.Keys(env)) {
		if isSecretSetting(name) && !fromSecret[name] {
			fs.add("%s: %s must come from a Secret, not a ConfigMap or a literal value", at, name)
		}
	}
	cfg, ok := f.checkEnv(at, c.Args, env, fs)

	psc := pod.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	sc := c.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	if !isTrue(sc.RunAsNonRoot) && !isTrue(psc.RunAsNonRoot) {
		fs.add("%s: runAsNonRoot is not true", at)
	}
	if uid := cmpPtr(sc.RunAsUser, psc.RunAsUser); uid != nil && *uid == 0 {
		fs.add("%s: runs as uid 0", at)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		fs.add("%s: allowPrivilegeEscalation is not false", at)
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		fs.add("%s: readOnlyRootFilesystem is not true", at)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		fs.add("%s: does not drop ALL capabilities", at)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil {
		seccomp = psc.SeccompProfile
	}
	if seccomp == nil || (seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault && seccomp.Type != corev1.SeccompProfileTypeLocalhost) {
		fs.add("%s: no RuntimeDefault (or Localhost) seccomp profile", at)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := c.Resources.Requests[r]
		lim, okLim := c.Resources.Limits[r]
		switch {
		case !okReq || !okLim || req.IsZero() || lim.IsZero():
			fs.add("%s: needs both a request and a limit of %s", at, r)
		case req.Cmp(lim) > 0:
			fs.add("%s: requests more %s (%s) than its limit (%s)", at, r, req.String(), lim.String())
		}
	}
	if c.Image == "" || strings.HasSuffix(c.Image, ":latest") || (!strings.Contains(c.Image, ":") && !strings.Contains(c.Image, "@")) {
		fs.add("%s: image %q is not pinned to a tag or digest", at, c.Image)
	}
	return cfg, ok
}

func isTrue(b *bool) bool { return b != nil && *b }

func cmpPtr[T any](a, b *T) *T {
	if a != nil {
		return a
	}
	return b
}

// containerEnv resolves the environment c gets from its envFrom sources and
// env entries against the rendered ConfigMaps and Secrets; fromSecret marks
// the names whose value comes from a Secret.
func (ks *kubeSet) containerEnv(at string, c *corev1.Container, fs *findings) (env map[string]string, fromSecret map[string]bool) {
	env, fromSecret = map[string]string{}, map[string]bool{}
	for _, src := range c.EnvFrom {
		switch {
		case src.ConfigMapRef != nil:
			cm, ok := ks.configMaps[src.ConfigMapRef.Name]
			if !ok {
				fs.add("%s: envFrom names ConfigMap %q, which is not in the manifests", at, src.ConfigMapRef.Name)
				continue
			}
			for k, v := range cm.Data {
				env[src.Prefix+k] = v
				delete(fromSecret, src.Prefix+k)
			}
		case src.SecretRef != nil:
			s, ok := ks.secrets[src.SecretRef.Name]
			if !ok {
				fs.add("%s: envFrom names Secret %q, which is not in the manifests", at, src.SecretRef.Name)
				continue
			}
			for k, v := range secretData(s) {
				env[src.Prefix+k] = v
				fromSecret[src.Prefix+k] = true
			}
		}
	}
	for _, e := range c.Env {
		switch vf := e.ValueFrom; {
		case vf == nil:
			env[e.Name] = e.Value
			delete(fromSecret, e.Name)
		case vf.SecretKeyRef != nil:
			s, ok := ks.secrets[vf.SecretKeyRef.Name]
			v, hasKey := "", false
			if ok {
				v, hasKey = secretData(s)[vf.SecretKeyRef.Key]
			}
			if !hasKey {
				fs.add("%s: %s comes from key %q of Secret %q, which the manifests do not have", at, e.Name, vf.SecretKeyRef.Key, vf.SecretKeyRef.Name)
			}
			env[e.Name] = v
			fromSecret[e.Name] = true
		case vf.ConfigMapKeyRef != nil:
			cm, ok := ks.configMaps[vf.ConfigMapKeyRef.Name]
			v, hasKey := "", false
			if ok {
				v, hasKey = cm.Data[vf.ConfigMapKeyRef.Key]
			}
			if !hasKey {
				fs.add("%s: %s comes from key %q of ConfigMap %q, which the manifests do not have", at, e.Name, vf.ConfigMapKeyRef.Key, vf.ConfigMapKeyRef.Name)
			}
			env[e.Name] = v
			delete(fromSecret, e.Name)
		default: // a field or resource reference: the cluster fills it in
			env[e.Name] = ""
		}
	}
	return env, fromSecret
}

func secretData(s *corev1.Secret) map[string]string {
	out := map[string]string{}
	for k, v := range s.Data {
		out[k] = string(v)
	}
	for k, v := range s.StringData {
		out[k] = v
	}
	return out
}

// checkMigration checks the Job that runs `roomcast migrate up`, and
// returns the configuration it runs with.
func (ks *kubeSet) checkMigration(f *codeFacts, worker *appsv1.Deployment, workerC *corev1.Container, fs *findings) (config.Config, bool) {
	found := false
	var migration config.Config
	migrationOK := false
	for _, j := range ks.jobs {
		at := fmt.Sprintf("%s: Job %s", ks.where, j.Name)
		pod := &j.Spec.Template.Spec
		c := containerRunning(pod, "migrate")
		if c == nil {
			fs.add("%s: runs no `roomcast migrate` container", at)
			continue
		}
		found = true
		if cfg, ok := ks.checkContainer(f, at, pod, c, fs); ok {
			ks.checkNetworkPolicies(at, labels.Set(j.Spec.Template.Labels), c, egressPorts(cfg, false, false), 0, "", fs)
			migration, migrationOK = cfg, true
		}
		if c.Image != workerC.Image {
			fs.add("%s: image %q is not the worker's %q: the migrations must be the ones that version embeds", at, c.Image, workerC.Image)
		}
		if pod.RestartPolicy != corev1.RestartPolicyNever && pod.RestartPolicy != corev1.RestartPolicyOnFailure {
			fs.add("%s: restartPolicy %q, want Never or OnFailure", at, pod.RestartPolicy)
		}
		if j.Spec.BackoffLimit == nil {
			fs.add("%s: no backoffLimit", at)
		}
	}
	if !found {
		fs.add("%s: no Job runs `roomcast migrate up` before Deployment %s", ks.where, worker.Name)
	}
	return migration, migrationOK
}

// checkServices checks the Services of the workloads' pods and the
// ServiceMonitors of those Services, and returns the job names Prometheus
// gives the scraped series and the workloads a ServiceMonitor scrapes.
func (ks *kubeSet) checkServices(f *codeFacts, workloads []*workload, fs *findings) (map[string]bool, map[*workload]bool) {
	jobs, monitored := map[string]bool{}, map[*workload]bool{}
	serves := map[*corev1.Service]*workload{}
	for _, svc := range ks.services {
		at := fmt.Sprintf("%s: Service %s", ks.where, svc.Name)
		var selected []*workload
		for _, cand := range workloads {
			if len(svc.Spec.Selector) > 0 && labels.SelectorFromSet(svc.Spec.Selector).Matches(cand.labels()) {
				selected = append(selected, cand)
			}
		}
		if len(selected) != 1 {
			fs.add("%s: selects the pods of %d roomcast Deployments, want those of the worker or of the API", at, len(selected))
			continue
		}
		w := selected[0]
		serves[svc] = w
		for _, sp := range svc.Spec.Ports {
			if got := containerPort(w.c, sp.TargetPort); got != w.port() {
				fs.add("%s: port %s targets %s (%d), not %s's %d", at, sp.Name, sp.TargetPort.String(), got, w.addrVar, w.port())
			}
		}
	}
	for _, sm := range ks.monitors {
		at := fmt.Sprintf("%s: ServiceMonitor %s", ks.where, sm.Name)
		var svc *corev1.Service
		for _, s := range ks.services {
			if selects(&sm.Spec.Selector, labels.Set(s.Labels)) && serves[s] != nil {
				svc = s
			}
		}
		if svc == nil {
			fs.add("%s: selects none of the Services", at)
			continue
		}
		w := serves[svc]
		monitored[w] = true
		job := svc.Name
		if sm.Spec.JobLabel != "" {
			job = svc.Labels[sm.Spec.JobLabel]
		}
		jobs[job] = true
		if len(sm.Spec.Endpoints) == 0 {
			fs.add("%s: has no endpoints", at)
		}
		for _, ep := range sm.Spec.Endpoints {
			if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
				fs.add("%s: endpoint port %q is not a port of Service %s", at, ep.Port, svc.Name)
			}
			path := cmpOr(ep.Path, "/metrics")
			if code, body, _ := f.getFrom(w.command, path); code != 200 || !strings.Contains(body, "roomcast_") {
				fs.add("%s: path %s is not roomcast's metrics (GET answers %d)", at, path, code)
			}
		}
	}
	return jobs, monitored
}

// checkRules checks every alert and recording rule against the worker's
// metrics, and collects the alerts' runbook URLs.
func (ks *kubeSet) checkRules(f *codeFacts, jobs map[string]bool, fs *findings, alerts map[string]string) {
	for _, pr := range ks.rules {
		for _, g := range pr.Spec.Groups {
			for _, r := range g.Rules {
				name := cmpOr(r.Alert, r.Record)
				at := fmt.Sprintf("%s: PrometheusRule %s rule %s", ks.where, pr.Name, name)
				expr := r.Expr.String()
				checkPromQL(f.metrics, at, expr, fs)
				for _, m := range promJobLabel.FindAllStringSubmatch(expr, -1) {
					if !jobs[m[1]] {
						fs.add("%s: matches job=%q, but the ServiceMonitor's series get job %v", at, m[1], slices.Sorted(maps.Keys(jobs)))
					}
				}
				if r.Alert != "" {
					alerts[r.Alert] = r.Annotations["runbook_url"]
					if r.Annotations["summary"] == "" || r.Labels["severity"] == "" {
						fs.add("%s: needs a summary and a severity", at)
					}
				}
			}
		}
	}
}

// checkScaledObject checks a KEDA ScaledObject against the Deployment it
// scales and the configuration that Deployment gives roomcast.
func (ks *kubeSet) checkScaledObject(f *codeFacts, so *kedaScaledObject, fs *findings) {
	at := fmt.Sprintf("%s: ScaledObject %s", ks.where, so.Name)
	ref := so.Spec.ScaleTargetRef
	if ref == nil {
		fs.add("%s: no scaleTargetRef", at)
		return
	}
	if (ref.Kind != "" && ref.Kind != "Deployment") || (ref.APIVersion != "" && ref.APIVersion != "apps/v1") {
		fs.add("%s: scales a %s %s, not the worker Deployment", at, ref.APIVersion, ref.Kind)
		return
	}
	var target *appsv1.Deployment
	for _, d := range ks.deployments {
		if d.Name == ref.Name {
			target = d
		}
	}
	if target == nil {
		fs.add("%s: scaleTargetRef names Deployment %q, which is not in the manifests", at, ref.Name)
		return
	}
	pod := &target.Spec.Template.Spec
	var c *corev1.Container
	for i := range pod.Containers {
		if ref.EnvSourceContainerName == "" || pod.Containers[i].Name == ref.EnvSourceContainerName {
			c = &pod.Containers[i]
			break
		}
	}
	if c == nil || len(c.Args) == 0 || c.Args[0] != "run" {
		fs.add("%s: its environment source is not the `roomcast run` container", at)
		return
	}
	var quiet findings // the container's own findings are reported by checkWorker
	env, _ := ks.containerEnv(at, c, &quiet)
	cfg, err := f.config(c.Args, env)
	if err != nil {
		return
	}

	parts, _ := strconv.Atoi(target.Annotations[partitionsAnnotation])
	minR, maxR := so.Spec.MinReplicaCount, so.Spec.MaxReplicaCount
	switch {
	case maxR == nil:
		fs.add("%s: no maxReplicaCount (KEDA's default is 100)", at)
	case parts > 0 && int(*maxR) > parts:
		fs.add("%s: maxReplicaCount %d is more than the topic's %d partitions (%s of Deployment %s)", at, *maxR, parts, partitionsAnnotation, target.Name)
	}
	if minR == nil || *minR < 1 {
		fs.add("%s: minReplicaCount must be at least 1: the workers also deliver what Pusher is owed", at)
	} else if maxR != nil && *minR > *maxR {
		fs.add("%s: minReplicaCount %d is above maxReplicaCount %d", at, *minR, *maxR)
	}
	if so.Spec.IdleReplicaCount != nil {
		fs.add("%s: idleReplicaCount would stop every worker", at)
	}
	if target.Spec.Replicas != nil {
		fs.add("%s: Deployment %s sets replicas, which every `kubectl apply` would reset under the autoscaler", at, target.Name)
	}

	kafka := 0
	for i, tr := range so.Spec.Triggers {
		if tr.Type != "kafka" {
			continue
		}
		kafka++
		tat := fmt.Sprintf("%s trigger %d", at, i)
		md := tr.Metadata
		for _, k := range slices.Sorted(maps.Keys(md)) {
			if !kedaKafkaParameters[strings.TrimSuffix(k, "FromEnv")] {
				fs.add("%s: %q is not a parameter of KEDA's kafka scaler", tat, k)
			}
		}
		resolve := func(param string) (string, bool) {
			if name, ok := md[param+"FromEnv"]; ok {
				v, ok := env[name]
				if !ok {
					fs.add("%s: %sFromEnv names %s, which container %s's environment does not have", tat, param, name, c.Name)
				}
				return v, true
			}
			v, ok := md[param]
			return v, ok
		}
		want := map[string]string{
			"bootstrapServers": strings.Join(cfg.Kafka.Brokers, ","),
			"consumerGroup":    cfg.ConsumerGroup,
			"topic":            cfg.Topic,
		}
		for _, param := range slices.Sorted(maps.Keys(want)) {
			got, ok := resolve(param)
			got = strings.ReplaceAll(got, " ", "")
			if !ok || got != want[param] {
				fs.add("%s: %s is %q, but roomcast consumes %q", tat, param, got, want[param])
			}
		}
		if got := cmpOr(md["offsetResetPolicy"], "latest"); got != cfg.InitialOffset {
			fs.add("%s: offsetResetPolicy %q differs from KAFKA_INITIAL_OFFSET %q", tat, got, cfg.InitialOffset)
		}
		if b, _ := strconv.ParseBool(md["allowIdleConsumers"]); b {
			fs.add("%s: allowIdleConsumers would scale past the partition count", tat)
		}
		if v, ok := md["lagThreshold"]; ok {
			if n, err := strconv.Atoi(v); err != nil || n <= 0 {
				fs.add("%s: lagThreshold %q is not a positive number", tat, v)
			}
		}
		auth := ks.triggerAuth(tat, tr.AuthenticationRef, pod, env, fs)
		param := func(name string) string { return cmpOr(md[name], auth[name]) }
		if mech := cfg.Kafka.SASLMechanism; mech != "" {
			if got := param("sasl"); got != kedaSASL[mech] {
				fs.add("%s: sasl is %q, but roomcast authenticates with KAFKA_SASL_MECHANISM=%s (KEDA: %q)", tat, got, mech, kedaSASL[mech])
			}
			if auth["username"] != cfg.Kafka.SASLUsername || auth["password"] != cfg.Kafka.SASLPassword {
				fs.add("%s: its username and password are not roomcast's KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD", tat)
			}
		} else if got := param("sasl"); got != "" && got != "none" {
			fs.add("%s: sasl is %q, but roomcast uses no SASL", tat, got)
		}
		wantTLS := map[bool]string{true: "enable", false: "disable"}[cfg.Kafka.TLS]
		if got := cmpOr(param("tls"), "disable"); got != wantTLS {
			fs.add("%s: tls is %q, but KAFKA_TLS=%v (KEDA: %q)", tat, got, cfg.Kafka.TLS, wantTLS)
		}
	}
	if kafka == 0 {
		fs.add("%s: has no kafka trigger", at)
	}
}

// triggerAuth resolves the parameters of the TriggerAuthentication ref names.
func (ks *kubeSet) triggerAuth(at string, ref *kedaAuthenticationRef, pod *corev1.PodSpec, env map[string]string, fs *findings) map[string]string {
	params := map[string]string{}
	if ref == nil {
		return params
	}
	ta, ok := ks.auths[ref.Name]
	if !ok || (ref.Kind != "" && ref.Kind != "TriggerAuthentication") {
		fs.add("%s: authenticationRef names %s %q, which is not in the manifests", at, cmpOr(ref.Kind, "TriggerAuthentication"), ref.Name)
		return params
	}
	for _, e := range ta.Spec.Env {
		if e.ContainerName != "" && !slices.ContainsFunc(pod.Containers, func(c corev1.Container) bool { return c.Name == e.ContainerName }) {
			fs.add("%s: TriggerAuthentication %s reads container %q, which the pod does not have", at, ta.Name, e.ContainerName)
		}
		v, ok := env[e.Name]
		if !ok {
			fs.add("%s: TriggerAuthentication %s reads %s, which the container's environment does not have", at, ta.Name, e.Name)
		}
		params[e.Parameter] = v
	}
	for _, r := range ta.Spec.SecretTargetRef {
		s, ok := ks.secrets[r.Name]
		v, hasKey := "", false
		if ok {
			v, hasKey = secretData(s)[r.Key]
		}
		if !hasKey {
			fs.add("%s: TriggerAuthentication %s reads key %q of Secret %q, which the manifests do not have (a generated Secret's name has a hash suffix: use env instead)", at, ta.Name, r.Key, r.Name)
		}
		params[r.Parameter] = v
	}
	for _, r := range ta.Spec.ConfigMapTargetRef {
		cm, ok := ks.configMaps[r.Name]
		v, hasKey := "", false
		if ok {
			v, hasKey = cm.Data[r.Key]
		}
		if !hasKey {
			fs.add("%s: TriggerAuthentication %s reads key %q of ConfigMap %q, which the manifests do not have", at, ta.Name, r.Key, r.Name)
		}
		params[r.Parameter] = v
	}
	for p := range params {
		if !kedaKafkaParameters[p] {
			fs.add("%s: TriggerAuthentication %s sets %q, not a parameter of KEDA's kafka scaler", at, ta.Name, p)
		}
	}
	return params
}
