package api

import (
	"encoding/json"
	"log/slog"
	"net/http"

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
}

// Server answers roomcast's HTTP API (see docs/api.md).
type Server struct {
	cfg Config
	db  *gorm.DB
	log *slog.Logger
}

// New returns the API server for cfg.
func New(cfg Config) *Server {
	if cfg.MaxPage <= 0 {
		cfg.MaxPage = 500
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, db: cfg.DB, log: cfg.Log}
}

// Handler routes the API. Every route needs an identity (401 without one).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /pusher/auth", s.pusherAuth)
	mux.HandleFunc("POST /pusher/user-auth", s.userAuth)
	mux.HandleFunc("GET /rooms/{roomId}/events", s.roomEvents)
	mux.HandleFunc("GET /rooms/{roomId}/messages", s.roomMessages)
	mux.HandleFunc("GET /rooms/{roomId}/messages/{messageId}", s.roomMessage)
	mux.HandleFunc("GET /users/me/notifications", s.myNotifications)
	return s.identify(mux)
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
