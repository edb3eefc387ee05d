package main

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHealthcheck(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			_, _ = rw.Write([]byte("ok\n"))
		case "/readyz":
			rw.WriteHeader(http.StatusServiceUnavailable)
			_, _ = rw.Write([]byte("kafka: no brokers\n"))
		default:
			http.NotFound(rw, r)
		}
	}))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	closed := freeAddr(t)

	cases := []struct {
		name    string
		args    []string
		addr    string
		wantErr string // "" for success
		usage   bool
	}{
		{name: "healthy on all interfaces", addr: ":" + port},
		{name: "healthy on 0.0.0.0", addr: "0.0.0.0:" + port},
		{name: "healthy on loopback", addr: "127.0.0.1:" + port},
		{name: "not ready", args: []string{"-ready"}, addr: ":" + port, wantErr: "503"},
		{name: "nothing listening", addr: closed, wantErr: "healthcheck http://" + closed + "/healthz"},
		{name: "bad HTTP_ADDR", addr: "8080", wantErr: "HTTP_ADDR"},
		{name: "stray argument", args: []string{"now"}, addr: ":" + port, usage: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			stdout, _, err := runQuick(t, 10*time.Second, append([]string{"healthcheck"}, c.args...),
				envOf(map[string]string{"HTTP_ADDR": c.addr}), nil)
			switch {
			case c.usage:
				if !errors.Is(err, errUsage) {
					t.Fatalf("err = %v, want a usage error", err)
				}
			case c.wantErr == "":
				if err != nil || !strings.Contains(stdout, "ok") {
					t.Fatalf("err = %v, stdout %q; want success", err, stdout)
				}
			default:
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, c.wantErr)
				}
			}
		})
	}
}

func TestLocalAddr(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]string{
		":8080":          "127.0.0.1:8080",
		"0.0.0.0:8080":   "127.0.0.1:8080",
		"[::]:8080":      "[::1]:8080",
		"10.1.2.3:9000":  "10.1.2.3:9000",
		"localhost:8080": "localhost:8080",
	} {
		if got := localAddr(addr); got != want {
			t.Errorf("localAddr(%q) = %q, want %q", addr, got, want)
		}
	}
}

// TestHealthcheckAPI: -api asks roomcast api at API_ADDR, not the worker
// at HTTP_ADDR, and checks the API's configuration as `roomcast api` does;
// without -api nothing changes.
func TestHealthcheckAPI(t *testing.T) {
	t.Parallel()
	serve := func(name string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/healthz":
				_, _ = rw.Write([]byte(name + " ok\n"))
			case "/readyz":
				rw.WriteHeader(http.StatusServiceUnavailable)
				_, _ = rw.Write([]byte(name + ": database: unreachable\n"))
			default:
				http.NotFound(rw, r)
			}
		}))
		t.Cleanup(srv.Close)
		_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
		return ":" + port
	}
	worker, api, closed := serve("worker"), serve("api"), freeAddr(t)
	apiEnv := func(kv ...string) map[string]string {
		env := map[string]string{
			"HTTP_ADDR": worker, "API_ADDR": api, "PUSHER_KEY": "key", "PUSHER_SECRET": "secret",
			"API_JWT_SECRET": "0123456789abcdef0123456789abcdef",
		}
		for i := 0; i+1 < len(kv); i += 2 {
			env[kv[i]] = kv[i+1]
		}
		return env
	}
	cases := []struct {
		name   string
		args   []string
		env    map[string]string
		stdout string // for success
		err    string // for failure
	}{
		{name: "the API", args: []string{"-api"}, env: apiEnv(), stdout: "api ok"},
		{name: "the worker by default", env: apiEnv(), stdout: "worker ok"},
		{name: "the worker without API settings", env: map[string]string{"HTTP_ADDR": worker}, stdout: "worker ok"},
		{name: "the API not ready", args: []string{"-api", "-ready"}, env: apiEnv(), err: "api: database: unreachable"},
		{name: "no API at API_ADDR, a worker at HTTP_ADDR", args: []string{"-api"}, env: apiEnv("API_ADDR", closed), err: "healthcheck http://" + closed + "/healthz"},
		{name: "bad API_ADDR", args: []string{"-api"}, env: apiEnv("API_ADDR", "8081"), err: "API_ADDR"},
		{name: "no identity mode", args: []string{"-api"}, env: apiEnv("API_JWT_SECRET", ""), err: "API_JWKS_URL, API_JWT_SECRET or API_TRUSTED_USER_HEADER"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			stdout, _, err := runQuick(t, 10*time.Second, append([]string{"healthcheck"}, c.args...), envOf(c.env), nil)
			switch {
			case c.err == "":
				if err != nil || !strings.Contains(stdout, c.stdout) {
					t.Fatalf("err = %v, stdout %q; want success with %q", err, stdout, c.stdout)
				}
			case err == nil || !strings.Contains(err.Error(), c.err):
				t.Fatalf("err = %v, want one containing %q", err, c.err)
			}
		})
	}
}
