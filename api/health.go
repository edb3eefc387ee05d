package api

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/roomcast/roomcast/projections"
)

// healthz answers 200 while the process serves: a liveness probe.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// readyz answers 200 "ready" when the API can answer: the database
// answers a ping and the identity can verify tokens (a key set is known).
// Otherwise 503 with one short line per problem.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	var problems []string
	if err := projections.Ping(ctx, s.db); err != nil {
		problems = append(problems, "database: "+err.Error())
	}
	if rd, ok := s.cfg.Identity.(readier); ok {
		if err := rd.ready(ctx); err != nil {
			problems = append(problems, err.Error())
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if len(problems) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(strings.Join(problems, "\n") + "\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}
