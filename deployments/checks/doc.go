// Package checks holds the cross-checks of deployments/ (Kubernetes
// manifests, compose file, Dockerfile, systemd unit, Grafana dashboard)
// against the roomcast binary built from this repository. It is a module of
// its own so that the libraries the checks parse those files with
// (Kubernetes' API types, kustomize, BuildKit, compose-go, the Prometheus
// Operator's types) stay out of roomcast's own dependencies.
package checks
