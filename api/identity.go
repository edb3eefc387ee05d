package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/roomcast/roomcast/config"
	"github.com/roomcast/roomcast/domain"
)

// Identity tells which user sends a request: from a bearer JWT, or from a
// header a trusted gateway sets. An error means no identity (401).
type Identity interface {
	UserID(r *http.Request) (string, error)
}

// Refusal is why a request has no identity: Reason is the 401's reason
// (safe to show: never the token), Label the metric's bounded label.
type Refusal struct {
	Label  string
	Reason string
	Err    error // the verifier's error, for the debug log
}

func (r *Refusal) Error() string { return r.Reason }
func (r *Refusal) Unwrap() error { return r.Err }

func refuse(label, reason string, err error) *Refusal {
	return &Refusal{Label: label, Reason: reason, Err: err}
}

// challenger is an Identity that says how to authenticate in the
// WWW-Authenticate header of its 401s (RFC 9110 11.6.1).
type challenger interface {
	challenge(err error) string
}

// readier is an Identity that may not be able to identify anyone yet (a
// key set not fetched): /readyz reports it.
type readier interface {
	ready(ctx context.Context) error
}

// NewIdentity is the Identity cfg configures (exactly one mode, see
// config.APIConfig). ctx bounds what it runs in the background (the key
// set's refresh).
func NewIdentity(ctx context.Context, cfg config.APIConfig, log *slog.Logger) (Identity, error) {
	jwt := JWTSettings{Issuer: cfg.JWTIssuer, Audiences: cfg.JWTAudiences, Leeway: cfg.JWTLeeway, UserClaim: cfg.JWTUserClaim}
	switch {
	case cfg.JWKSURL != "":
		return NewJWKSIdentity(ctx, cfg.JWKSURL, jwt, JWKSOptions{Refresh: cfg.JWKSRefresh, Log: log})
	case cfg.JWTSecret != "":
		return NewSecretIdentity([]byte(cfg.JWTSecret), jwt), nil
	case cfg.TrustedUserHeader != "":
		return HeaderIdentity{Header: cfg.TrustedUserHeader}, nil
	}
	return nil, errors.New("no identity mode configured (API_JWKS_URL, API_JWT_SECRET or API_TRUSTED_USER_HEADER)")
}

type userKey struct{}

// identify answers 401 to a request without an identity and passes the
// others on with their user id (see userID). The user id must be an id of
// the contract: no room membership or user channel can name another.
func (s *Server) identify(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := s.cfg.Identity.UserID(r)
		if err == nil && !domain.IsValidID(id) {
			err = refuse("user_id", fmt.Sprintf("the identity's user id is not a roomcast id (1..%d of A-Z a-z 0-9 _ - = @ , . ;)", domain.MaxIDLength), nil)
		}
		if err != nil {
			s.refuseIdentity(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, id)))
	})
}

// refuseIdentity answers 401 with the refusal's reason and counts it. The
// log line names the reason and the route, never the token.
func (s *Server) refuseIdentity(w http.ResponseWriter, r *http.Request, err error) {
	ref := &Refusal{Label: "other", Reason: "no identity"}
	errors.As(err, &ref)
	s.metrics.refusals.WithLabelValues(ref.Label).Inc()
	attrs := []any{slog.String("route", r.Pattern), slog.String("reason", ref.Reason)}
	if ref.Err != nil {
		attrs = append(attrs, slog.String("detail", ref.Err.Error()))
	}
	s.log.Debug("request without identity", attrs...)
	if c, ok := s.cfg.Identity.(challenger); ok {
		w.Header().Set("WWW-Authenticate", c.challenge(err))
	}
	writeError(w, http.StatusUnauthorized, ref.Reason)
}

// userID is the identified user of a request that passed identify.
func userID(r *http.Request) string {
	id, _ := r.Context().Value(userKey{}).(string)
	return id
}
