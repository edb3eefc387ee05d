package publishers

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/pusher/pusher-http-go/v5"

	"github.com/roomcast/roomcast/domain"
)

// Terminator closes a user's Pusher connections (Pusher's "terminate user
// connections"). A Pusher given to NewDispatcher that implements it is used
// for terminate deliveries; a *pusher.Client is used through
// TerminateUserConnections.
type Terminator interface {
	TerminateUserConnections(userID string) error
}

// TerminateUserConnections asks Pusher, through c's app, host and HTTP
// client, to close every connection that signed in as userID:
// POST /apps/{app_id}/users/{user_id}/terminate_connections with body {},
// signed as pusher-http-go signs its calls (it has no method for this one).
// Errors come back in pusher-http-go's forms, so that the dispatcher reads
// them as it reads a trigger's: "Status Code: 503 - <body>" for an HTTP
// error, a *url.Error for a network one.
func TerminateUserConnections(c *pusher.Client, userID string) error {
	// The id goes into the path as it is: ids are of
	// [A-Za-z0-9_\-=@,.;], all of them allowed in a path segment, so the
	// path sent is the path signed.
	if !domain.IsValidID(userID) {
		return fmt.Errorf("terminate connections: user id %q is not a valid id", userID)
	}
	if c.HTTPClient == nil {
		return errors.New("terminate connections: the Pusher client has no HTTP client")
	}
	path := "/apps/" + c.AppID + "/users/" + userID + "/terminate_connections"
	body := []byte(domain.TerminateBody)
	scheme := "http://"
	if c.Secure {
		scheme = "https://"
	}
	target := scheme + apiHost(c) + path + "?" + signedQuery(http.MethodPost, path, c.Key, c.Secret, body, time.Now())
	req, err := http.NewRequest(http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("terminate connections: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return &url.Error{Op: "Post", URL: req.URL.Redacted(), Err: err}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("Status Code: %d - %s", resp.StatusCode, answer)
	}
	return nil
}

// maxAnswerBytes bounds what is read of Pusher's answer (an error's text).
const maxAnswerBytes = 64 << 10

// apiHost is the host pusher-http-go calls for c: Host when set, else the
// cluster's, else Pusher's default.
func apiHost(c *pusher.Client) string {
	switch {
	case c.Host != "":
		return c.Host
	case c.Cluster != "":
		return "api-" + c.Cluster + ".pusher.com"
	default:
		return "api.pusherapp.com"
	}
}

// clientTerminator terminates through a pusher-http-go client.
type clientTerminator struct{ c *pusher.Client }

func (t clientTerminator) TerminateUserConnections(userID string) error {
	return TerminateUserConnections(t.c, userID)
}

// terminatorOf returns what terminates connections for p, or nil.
func terminatorOf(p Pusher) Terminator {
	switch p := p.(type) {
	case Terminator:
		return p
	case *pusher.Client:
		return clientTerminator{p}
	}
	return nil
}

// terminate makes the call a terminate delivery owes. A delivery that names
// no valid user, or a Pusher client that cannot terminate, fails as the
// client's own check would: the delivery is parked with the reason.
func (d *Dispatcher) terminate(del domain.Delivery) error {
	userID, err := domain.TerminatedUser(del)
	if err != nil {
		return err
	}
	if d.terminator == nil {
		return fmt.Errorf("terminate connections of user %q: the Pusher client (%T) cannot", userID, d.pusher)
	}
	return d.terminator.TerminateUserConnections(userID)
}
