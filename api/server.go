package api

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/pusher/pusher-http-go/v5"
	"gorm.io/gorm"
)

// Config is what New needs.
type Config struct {
	// DB holds the tables the worker writes (read only here).
	DB *gorm.DB
	// Pusher signs channel authorizations (app id, key and secret).
	Pusher *pusher.Client
	// Identity tells who sends a request.
	Identity Identity
	Log      *slog.Logger
	// MaxPage caps the limit a history request may ask for (default 500).
	MaxPage int
	// Registry holds the API's metrics and is what /metrics serves
	// (default: a new registry with the Go and process collectors).
	Registry *prometheus.Registry
	// CORSOrigins may call the API from their pages (see cors; none: no CORS).
	CORSOrigins []string
}

// Server answers roomcast's HTTP API (see docs/api.md).
type Server struct {
	cfg     Config
	db      *gorm.DB
	log     *slog.Logger
	metrics *httpMetrics
}

// New returns the API server for cfg.
func New(cfg Config) *Server {
	if cfg.MaxPage <= 0 {
		cfg.MaxPage = 500
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = NewRegistry()
	}
	return &Server{cfg: cfg, db: cfg.DB, log: cfg.Log, metrics: newHTTPMetrics(cfg.Registry)}
}

// Handler routes the API, counted and timed by route and status. Every API
// route needs an identity (401 without one); /healthz, /readyz and
// /metrics do not.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	api := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, s.identify(h)) }
	api("POST /pusher/auth", s.pusherAuth)
	api("POST /pusher/user-auth", s.userAuth)
	api("GET /rooms/{roomId}/events", s.roomEvents)
	api("GET /rooms/{roomId}/messages", s.roomMessages)
	api("GET /rooms/{roomId}/messages/{messageId}", s.roomMessage)
	api("GET /users/me/notifications", s.myNotifications)
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint")
	})
	return s.metrics.instrument(cors(s.cfg.CORSOrigins, s.cfg.Identity, mux))
}

// NewRegistry is a metrics registry with the Go runtime's and the
// process's collectors, as the worker's.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// apiError is the body of every error answer.
type apiError struct {
	Error string `json:"error"`
}

// writeError answers status with a JSON body saying why.
func writeError(w http.ResponseWriter, status int, reason string) {
	writeJSON(w, status, apiError{Error: reason})
}

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
