package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func (w *Worker) listen(addr string) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("HTTP_ADDR %s: %w", addr, err)
	}
	w.addr = ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		_, _ = rw.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", w.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(w.registry, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	srv.Addr = w.addr
	w.listener = ln
	return srv, nil
}

func (w *Worker) serve(srv *http.Server) error {
	if err := srv.Serve(w.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	return nil
}

func shutdownHTTP(srv *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}

// ready answers 200 "ready" when the last round of readiness checks found
// nothing wrong, otherwise 503 with one short line per problem. It asks
// nothing of Postgres, Kafka or Pusher itself (see readiness).
func (w *Worker) ready(rw http.ResponseWriter, _ *http.Request) {
	problems := w.readiness.snapshot(time.Now())
	rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rw.Header().Set("Cache-Control", "no-store")
	if len(problems) > 0 {
		rw.WriteHeader(http.StatusServiceUnavailable)
		_, _ = rw.Write([]byte(strings.Join(problems, "\n") + "\n"))
		return
	}
	_, _ = rw.Write([]byte("ready\n"))
}
