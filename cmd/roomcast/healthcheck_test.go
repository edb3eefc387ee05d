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
