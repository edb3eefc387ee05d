package api

import (
	"context"
	"net/http"
)

// Identity tells which user sends a request: from a bearer JWT, or from a
// header a trusted gateway sets. An error means no identity (401).
type Identity interface {
	UserID(r *http.Request) (string, error)
}

type userKey struct{}

// identify answers 401 to a request without an identity and passes the
// others on with their user id (see userID).
func (s *Server) identify(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// TODO(api helper): log the reason at debug, never the token.
		id, err := s.cfg.Identity.UserID(r)
		if err != nil || id == "" {
			writeError(w, http.StatusUnauthorized, "no identity")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, id)))
	})
}

// userID is the identified user of a request that passed identify.
func userID(r *http.Request) string {
	id, _ := r.Context().Value(userKey{}).(string)
	return id
}
