package main

import (
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/config"
)

func TestConfigProjectionTimeout(t *testing.T) {
	t.Parallel()
	for value, want := range map[string]time.Duration{"": 30 * time.Second, "5s": 5 * time.Second, "2m": 2 * time.Minute} {
		env := validRunEnv(t)
		if value != "" {
			env["PROJECTION_TIMEOUT"] = value
		}
		cfg, err := config.Load(envOf(env), config.Kafka, config.Database, config.Pusher, config.HTTP)
		if err != nil {
			t.Fatalf("PROJECTION_TIMEOUT=%q: %v", value, err)
		}
		if cfg.ProjectionTimeout != want {
			t.Errorf("PROJECTION_TIMEOUT=%q: %v, want %v", value, cfg.ProjectionTimeout, want)
		}
	}
	for _, value := range []string{"soon", "0s", "-5s", "30"} {
		env := validRunEnv(t)
		env["PROJECTION_TIMEOUT"] = value
		if _, err := config.Load(envOf(env), config.Kafka, config.Database, config.Pusher, config.HTTP); err == nil || !strings.Contains(err.Error(), "PROJECTION_TIMEOUT: ") {
			t.Errorf("PROJECTION_TIMEOUT=%q: %v, want an error naming the variable", value, err)
		}
	}
}
