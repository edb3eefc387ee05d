package main

import (
	"context"
	"io"

	"github.com/roomcast/roomcast/api"
	"github.com/roomcast/roomcast/config"
)

// runAPI is `roomcast api`: channel authorization and history for browsers
// on API_ADDR, until ctx ends.
func runAPI(ctx context.Context, rest []string, env config.Getenv, stderr io.Writer) error {
	if err := noArguments("api", rest); err != nil {
		return err
	}
	cfg, err := config.Load(env, config.Database, config.API)
	if err != nil {
		return err
	}
	svc, err := api.Start(ctx, cfg, newLogger(cfg, stderr))
	if err != nil {
		return err
	}
	return svc.Run(ctx)
}
