package checks

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"

	"github.com/roomcast/roomcast/config"

	"github.com/jackc/pgx/v5/pgconn"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The NetworkPolicies are checked against what the pods they select do:
// every port the configuration makes roomcast call (each broker, the
// database, Pusher, the identity provider's key set, DNS) is allowed out, and
// only the port it listens on (HTTP_ADDR's, API_ADDR's) in, from a named
// source.

// wantedPort is a destination port and protocol a pod must reach.
type wantedPort struct {
	what     string
	port     int
	protocol corev1.Protocol
}

// egressPorts lists what cfg makes `roomcast run` (kafka, pusher),
// `roomcast api` or `roomcast migrate` call: the API's key set is in cfg only
// for the API.
func egressPorts(cfg config.Config, kafka, pusher bool) []wantedPort {
	want := []wantedPort{{"DNS", 53, corev1.ProtocolUDP}, {"DNS", 53, corev1.ProtocolTCP}}
	if pc, err := pgconn.ParseConfig(cfg.DatabaseURL); err == nil {
		want = append(want, wantedPort{"Postgres (DATABASE_URL)", int(pc.Port), corev1.ProtocolTCP})
		for _, fb := range pc.Fallbacks {
			want = append(want, wantedPort{"Postgres (DATABASE_URL)", int(fb.Port), corev1.ProtocolTCP})
		}
	}
	if kafka {
		for _, b := range cfg.Kafka.Brokers {
			if _, p, err := net.SplitHostPort(b); err == nil {
				n, _ := strconv.Atoi(p)
				want = append(want, wantedPort{"Kafka broker " + b, n, corev1.ProtocolTCP})
			}
		}
	}
	if u, err := url.Parse(cfg.API.JWKSURL); cfg.API.JWKSURL != "" && err == nil {
		n, _ := strconv.Atoi(cmpOr(u.Port(), map[string]string{"https": "443", "http": "80"}[u.Scheme]))
		want = append(want, wantedPort{"the identity provider's key set (API_JWKS_URL)", n, corev1.ProtocolTCP})
	}
	if pusher {
		switch {
		case cfg.Pusher.Host != "":
			_, p, _ := net.SplitHostPort(cfg.Pusher.Host)
			n, _ := strconv.Atoi(p)
			want = append(want, wantedPort{"Pusher (PUSHER_HOST)", n, corev1.ProtocolTCP})
		case cfg.Pusher.UseTLS:
			want = append(want, wantedPort{"Pusher's API over TLS", 443, corev1.ProtocolTCP})
		default:
			want = append(want, wantedPort{"Pusher's API", 80, corev1.ProtocolTCP})
		}
	}
	return want
}

// policiesOf returns the NetworkPolicies that select pods with podLabels.
func (ks *kubeSet) policiesOf(podLabels labels.Set) []*networkingv1.NetworkPolicy {
	var out []*networkingv1.NetworkPolicy
	for _, np := range ks.netpols {
		if sel := np.Spec.PodSelector; selects(&sel, podLabels) {
			out = append(out, np)
		}
	}
	return out
}

func hasPolicyType(np *networkingv1.NetworkPolicy, t networkingv1.PolicyType) bool {
	if len(np.Spec.PolicyTypes) == 0 { // Kubernetes' default: Ingress, and Egress when it has egress rules
		return t == networkingv1.PolicyTypeIngress || len(np.Spec.Egress) > 0
	}
	return slices.Contains(np.Spec.PolicyTypes, t)
}

// portAllows reports whether one rule's ports let w through (no ports: all).
func portAllows(ports []networkingv1.NetworkPolicyPort, w wantedPort, c *corev1.Container) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		proto := corev1.ProtocolTCP
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		if proto != w.protocol {
			continue
		}
		if p.Port == nil {
			return true
		}
		lo := p.Port.IntValue()
		if p.Port.Type == intstr.String {
			if c == nil {
				continue // a named port means the destination pod's: not an outside service's
			}
			lo = containerPort(c, *p.Port)
		}
		hi := lo
		if p.EndPort != nil {
			hi = int(*p.EndPort)
		}
		if w.port >= lo && w.port <= hi {
			return true
		}
	}
	return false
}

// checkNetworkPolicies checks the policies that select the pods of a
// workload: egress allows every port in want, and ingress (when listening
// is set, the port of c that addrVar gives) only that port, from named
// sources.
func (ks *kubeSet) checkNetworkPolicies(at string, podLabels labels.Set, c *corev1.Container, want []wantedPort, listening int, addrVar string, fs *findings) {
	pols := ks.policiesOf(podLabels)
	if len(pols) == 0 {
		fs.add("%s: no NetworkPolicy selects its pods: they may reach anything and be reached by anyone", at)
		return
	}
	var egress []networkingv1.NetworkPolicyEgressRule
	var ingress []networkingv1.NetworkPolicyIngressRule
	restrictsEgress, restrictsIngress := false, false
	for _, np := range pols {
		if hasPolicyType(np, networkingv1.PolicyTypeEgress) {
			restrictsEgress = true
			egress = append(egress, np.Spec.Egress...)
		}
		if hasPolicyType(np, networkingv1.PolicyTypeIngress) {
			restrictsIngress = true
			ingress = append(ingress, np.Spec.Ingress...)
		}
	}
	if !restrictsEgress {
		fs.add("%s: its NetworkPolicies do not restrict egress (policyTypes without Egress)", at)
	}
	if !restrictsIngress {
		fs.add("%s: its NetworkPolicies do not restrict ingress (policyTypes without Ingress)", at)
	}
	if restrictsEgress {
		for _, w := range want {
			if !slices.ContainsFunc(egress, func(r networkingv1.NetworkPolicyEgressRule) bool { return portAllows(r.Ports, w, nil) }) {
				fs.add("%s: its NetworkPolicies allow no egress to %s port %d/%s", at, w.what, w.port, w.protocol)
			}
		}
	}
	if !restrictsIngress {
		return
	}
	allowed := false
	for i, r := range ingress {
		rat := fmt.Sprintf("%s: ingress rule %d", at, i)
		if len(r.From) == 0 {
			fs.add("%s: open to every source (no from)", rat)
		}
		if len(r.Ports) == 0 {
			fs.add("%s: allows every port, want only %s's %d", rat, addrVar, listening)
		}
		for _, p := range r.Ports {
			n := -1
			if p.Port != nil {
				n = containerPort(c, *p.Port)
			}
			if n != listening || p.EndPort != nil {
				fs.add("%s: allows port %v, want only %s's %d", rat, p.Port, addrVar, listening)
			}
		}
		allowed = allowed || portAllows(r.Ports, wantedPort{port: listening, protocol: corev1.ProtocolTCP}, c)
	}
	if listening > 0 && !allowed {
		fs.add("%s: its NetworkPolicies let nothing reach %s's port %d (metrics, probes)", at, addrVar, listening)
	}
}

// checkStaticMembership checks that the worker names its consumer group
// member after its pod (KAFKA_GROUP_INSTANCE_ID from metadata.name), so that
// a restarted container takes its partitions back at once.
func checkStaticMembership(at string, d *appsv1.Deployment, c *corev1.Container, fs *findings) {
	for _, e := range c.Env {
		if e.Name != "KAFKA_GROUP_INSTANCE_ID" {
			continue
		}
		if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
			fs.add("%s: KAFKA_GROUP_INSTANCE_ID must come from the pod's name (fieldRef metadata.name): unique per replica, kept across container restarts", at)
		}
		return
	}
	fs.add("%s: Deployment %s: container %s does not set KAFKA_GROUP_INSTANCE_ID from the pod's name (static group membership)", at, d.Name, c.Name)
}
