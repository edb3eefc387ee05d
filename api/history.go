package api

import "net/http"

// roomEvents is GET /rooms/{roomId}/events?after_seq=N&limit=: catch-up.
func (s *Server) roomEvents(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotImplemented, "not implemented yet")
}

// roomMessages is GET /rooms/{roomId}/messages?before_seq=&limit=.
func (s *Server) roomMessages(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotImplemented, "not implemented yet")
}

// roomMessage is GET /rooms/{roomId}/messages/{messageId}.
func (s *Server) roomMessage(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotImplemented, "not implemented yet")
}

// myNotifications is GET /users/me/notifications?after=&limit=.
func (s *Server) myNotifications(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotImplemented, "not implemented yet")
}
