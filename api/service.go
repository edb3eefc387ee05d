package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/pusher/pusher-http-go/v5"
	"gorm.io/gorm"

	"github.com/roomcast/roomcast/config"
	"github.com/roomcast/roomcast/projections"
)

// Service is `roomcast api`: the Server on its database, listening on
// API_ADDR. Start opens it, Run serves until its context ends.
type Service struct {
	cfg    config.Config
	log    *slog.Logger
	db     *gorm.DB
	srv    *http.Server
	ln     net.Listener
	cancel context.CancelFunc // ends the identity's background work
}

// Start checks the schema, builds the identity cfg configures and listens
// on cfg.API.Addr. Run must follow: it releases what Start took.
func Start(ctx context.Context, cfg config.Config, log *slog.Logger) (*Service, error) {
	log.Info("roomcast api starting", slog.String("addr", cfg.API.Addr), slog.String("identity", cfg.API.IdentityMode()))
	if cfg.API.JWKSURL != "" && len(cfg.API.JWTAudiences) == 0 {
		log.Warn("API_JWT_AUDIENCE is not set: any token of the identity provider is accepted, also one meant for another app")
	}
	db, _, err := projections.OpenChecked(ctx, cfg.DatabaseURL, cfg.DatabaseMaxConns)
	if err != nil {
		return nil, err
	}
	// The key set's refresh outlives Start's context: it ends with Run.
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	identity, err := NewIdentity(bg, cfg.API, log)
	if err != nil {
		cancel()
		_ = projections.Close(db)
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.API.Addr)
	if err != nil {
		cancel()
		_ = projections.Close(db)
		return nil, fmt.Errorf("API_ADDR %s: %w", cfg.API.Addr, err)
	}
	server := New(Config{
		DB:          db,
		Pusher:      &pusher.Client{AppID: cfg.Pusher.AppID, Key: cfg.Pusher.Key, Secret: cfg.Pusher.Secret},
		Identity:    identity,
		Log:         log,
		CORSOrigins: cfg.API.CORSOrigins,
	})
	srv := &http.Server{
		Handler:           server.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	return &Service{cfg: cfg, log: log, db: db, srv: srv, ln: ln, cancel: cancel}, nil
}

// Addr is the address the API listens on (API_ADDR with the port the
// system chose for :0).
func (s *Service) Addr() string { return s.ln.Addr().String() }

// Close releases what Start took, for a Service that will not Run.
func (s *Service) Close() {
	s.cancel()
	_ = s.ln.Close()
	_ = projections.Close(s.db)
}

// Run serves until ctx ends, then lets the requests in flight finish
// within SHUTDOWN_TIMEOUT and closes the database.
func (s *Service) Run(ctx context.Context) error {
	defer s.cancel()
	defer func() { _ = projections.Close(s.db) }()
	s.log.Info("serving the API, health, readiness and metrics", slog.String("addr", s.Addr()))
	served := make(chan error, 1)
	go func() { served <- s.srv.Serve(s.ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("api server: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("roomcast api stopping")
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	if serr := <-served; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("api server shutdown: %w", err)
	}
	s.log.Info("roomcast api stopped")
	return nil
}
