package api

import "net/http"

// pusherAuth is POST /pusher/auth: private and presence channel
// authorization as pusher-js asks for it.
func (s *Server) pusherAuth(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotImplemented, "not implemented yet")
}

// userAuth is POST /pusher/user-auth: pusher-js signin.
func (s *Server) userAuth(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotImplemented, "not implemented yet")
}
