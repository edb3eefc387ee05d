package checks

import (
	"slices"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/roomcast/roomcast/config"
)

// checkComposeAPI checks compose's `roomcast api` service against the
// worker's (whose configuration is workerCfg) and the migration's: the same
// image, started on a migrated database, signing for the worker's Pusher app
// (soketi's, checked with the worker), reading its database; its port
// published; a health check of its own, since the image's asks the worker's
// port; a stop grace period above its SHUTDOWN_TIMEOUT.
func checkComposeAPI(f *codeFacts, where string, api, worker, migrate *types.ServiceConfig, workerCfg config.Config,
	img *dockerImage, envOf func(*types.ServiceConfig) map[string]string, fs *findings) {
	at := where + ": service " + api.Name
	env := envOf(api)
	cfg, ok := f.checkEnv(at, api.Command, env, fs)
	if api.Image != worker.Image {
		fs.add("%s: image %q is not the worker's %q", at, api.Image, worker.Image)
	}
	if dep, ok := api.DependsOn[migrate.Name]; !ok || dep.Condition != types.ServiceConditionCompletedSuccessfully {
		fs.add("%s: must depend on %s with condition %s: roomcast api refuses a schema not migrated", at, migrate.Name, types.ServiceConditionCompletedSuccessfully)
	}
	switch {
	case api.HealthCheck == nil || api.HealthCheck.Disable:
		fs.add("%s: needs a healthcheck of its own: the image's asks the worker's HTTP_ADDR", at)
	case img != nil:
		checkHealthcheckCommand(f, at+": healthcheck", api.HealthCheck.Test, img.entrypoint, "api", env, fs)
	}
	if !ok {
		return
	}
	if cfg.Pusher.Key != workerCfg.Pusher.Key || cfg.Pusher.Secret != workerCfg.Pusher.Secret {
		fs.add("%s: PUSHER_KEY and PUSHER_SECRET are not service %s's: channel authorizations would be signed for another app", at, worker.Name)
	}
	// One role for the whole stack's own Postgres (see the file).
	checkAPIDatabase(at, workerCfg.DatabaseURL, cfg.DatabaseURL, "", fs)
	w := &workload{command: "api", addrVar: "API_ADDR", cfg: cfg}
	if !slices.ContainsFunc(api.Ports, func(p types.ServicePortConfig) bool { return int(p.Target) == w.port() }) {
		fs.add("%s: publishes no port %d, API_ADDR's", at, w.port())
	}
	grace := 10 * time.Second // compose's default
	if api.StopGracePeriod != nil {
		grace = time.Duration(*api.StopGracePeriod)
	}
	if grace <= cfg.ShutdownTimeout+httpShutdownGrace {
		fs.add("%s: stop_grace_period %v is not longer than SHUTDOWN_TIMEOUT (%v) plus %v", at, grace, cfg.ShutdownTimeout, httpShutdownGrace)
	}
}
