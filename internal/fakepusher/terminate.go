package fakepusher

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Pusher's "terminate user connections": POST
// /apps/{app_id}/users/{user_id}/terminate_connections with a JSON object
// body ({}), signed like every call. Pusher closes the connections that
// signed in as that user; the fake records the user instead.

// maxUserIDLength is the longest user id the fake takes (pusher-http-go's
// rule for user ids: 1..199 bytes).
const maxUserIDLength = 199

// Termination is one accepted terminate call.
type Termination struct {
	UserID     string
	Call       int64 // sequence number of the HTTP call (see Call.Seq)
	ReceivedAt time.Time
}

// terminatePath returns the user of an app-relative path
// users/{user_id}/terminate_connections.
func terminatePath(rest string) (string, bool) {
	rest, ok := strings.CutPrefix(rest, "users/")
	if !ok {
		return "", false
	}
	user, ok := strings.CutSuffix(rest, "/"+terminateEndpoint)
	if !ok || user == "" || strings.Contains(user, "/") {
		return "", false
	}
	return user, true
}

// decideTermination checks an authenticated terminate call that met no
// injected fault: a user id within Pusher's length, a JSON object body, then
// the rule of RejectTerminationWhen.
func decideTermination(user string, body []byte, reject func(string) int) outcome {
	if len(user) > maxUserIDLength {
		return fail(http.StatusBadRequest, "User id too long (%d bytes, at most %d allowed)", len(user), maxUserIDLength)
	}
	var obj map[string]json.RawMessage
	if o, ok := decodeJSON(body, &obj); !ok {
		return o
	}
	if obj == nil {
		return fail(http.StatusBadRequest, "Invalid JSON body: expected an object")
	}
	if reject != nil {
		if st := reject(user); st != 0 {
			return fail(validStatus(st), "rejected by rule (%d) for terminating the connections of user %q", st, user)
		}
	}
	return outcome{status: http.StatusOK, body: "{}", user: user}
}

// RejectTerminationWhen installs a rule for terminate calls (nil removes
// it): if f returns a non-zero status for the user of a valid call, the call
// is answered with it and not recorded. f must not call methods of s that
// block on a call in progress.
func (s *Server) RejectTerminationWhen(f func(userID string) int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejectUser = f
}

// Terminations returns a copy of the accepted terminate calls, in acceptance order.
func (s *Server) Terminations() []Termination {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Termination(nil), s.terminations...)
}

// TerminatedUsers returns the user of each accepted terminate call, in
// acceptance order (a user terminated twice is there twice).
func (s *Server) TerminatedUsers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.terminations))
	for i, t := range s.terminations {
		out[i] = t.UserID
	}
	return out
}

// WaitForTerminations blocks until at least n terminate calls are accepted,
// returning ctx's error if it ends first or an error if the server is closed.
func (s *Server) WaitForTerminations(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		have, closed, ch := len(s.terminations), s.closed, s.changed
		s.mu.Unlock()
		if have >= n {
			return nil
		}
		if closed {
			return fmt.Errorf("%w with %d of %d terminations recorded", errClosed, have, n)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("fakepusher: %d of %d terminations recorded: %w", have, n, ctx.Err())
		}
	}
}
