// Package alerts holds the unit tests of roomcast's Prometheus alert rules
// (deployments/kubernetes/components/prometheus-operator/prometheusrule.yaml).
// It is a module of its own so that Prometheus' engine, which the tests
// evaluate the rules with, stays out of roomcast's own dependencies.
package alerts
