package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/roomcast/roomcast/config"
)

// runHealthcheck is `roomcast healthcheck`: it asks the `roomcast run` of this
// machine, at HTTP_ADDR, for GET /healthz (or /readyz with -ready) and fails
// unless the answer is 200; with -api it asks the `roomcast api` at
// API_ADDR. It gives the container image, which has no shell and no curl, a
// Docker HEALTHCHECK.
func runHealthcheck(ctx context.Context, args []string, env config.Getenv, stdout io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	ready := fs.Bool("ready", false, "ask /readyz instead of /healthz")
	api := fs.Bool("api", false, "ask roomcast api at API_ADDR instead of roomcast run at HTTP_ADDR")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return fmt.Errorf("%w: healthcheck takes only -api, -ready and -timeout", errUsage)
	}
	// -api validates what `roomcast api` does: it runs in that command's
	// environment, and a configuration the API refuses is no healthy API.
	need, addr := config.HTTP, func(c config.Config) string { return c.HTTPAddr }
	if *api {
		need, addr = config.API, func(c config.Config) string { return c.API.Addr }
	}
	cfg, err := config.Load(env, need)
	if err != nil {
		return err
	}
	path := "/healthz"
	if *ready {
		path = "/readyz"
	}
	url := "http://" + localAddr(addr(cfg)) + path
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	_, err = fmt.Fprintf(stdout, "%s: %s", url, body)
	return err
}

// localAddr is the address to reach a server listening on addr (host:port)
// from the same machine: the loopback address when it listens on all of them.
func localAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	switch ip := net.ParseIP(host); {
	case host == "":
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified() && ip.To4() == nil:
		host = "::1"
	case ip != nil && ip.IsUnspecified():
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
