package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/roomcast/roomcast/domain"
)

// maxAuthBody bounds an authorization request's body: pusher-js sends a
// socket id and a channel name (and the app's own params, if any).
const maxAuthBody = 8 << 10

// The presence channel of a room: Pusher's presence members are the room's
// members who are connected, with the name and avatar the room knows.
const presenceRoomPrefix = "presence-room-"

// socketIDPattern is Pusher's socket id, as pusher-http-go checks it.
var socketIDPattern = regexp.MustCompile(`\A[0-9]+\.[0-9]+\z`)

// channelKind is what a channel name asks for.
type channelKind int

const (
	otherChannel    channelKind = iota // not a roomcast channel: 403
	roomChannel                        // private-room-{roomId}: members
	presenceChannel                    // presence-room-{roomId}: members, with channel_data
	userChannel                        // private-user-{userId}: that user
)

// authRequest is what pusher-js asks in a channel authorization or a
// user authentication: the connection and, for a channel, its name.
type authRequest struct {
	SocketID    string
	ChannelName string
}

// requestError is a malformed request: 400 (or status) with its reason.
type requestError struct {
	status int
	reason string
}

func (e *requestError) Error() string { return e.reason }

func badRequest(format string, a ...any) *requestError {
	return &requestError{status: http.StatusBadRequest, reason: fmt.Sprintf(format, a...)}
}

// readAuthRequest reads the form body pusher-js sends
// (application/x-www-form-urlencoded) or the same fields as a JSON object.
// A field given twice is refused: pusher-http-go would sign the first,
// and what is checked must be what is signed.
func readAuthRequest(w http.ResponseWriter, r *http.Request, needChannel bool) (authRequest, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAuthBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return authRequest{}, &requestError{status: http.StatusRequestEntityTooLarge, reason: fmt.Sprintf("request body over %d bytes", maxAuthBody)}
		}
		return authRequest{}, badRequest("cannot read the request body")
	}
	var req authRequest
	mediaType := "application/x-www-form-urlencoded"
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mediaType, _, err = mime.ParseMediaType(ct); err != nil {
			return authRequest{}, &requestError{status: http.StatusUnsupportedMediaType, reason: "unreadable Content-Type"}
		}
	}
	switch mediaType {
	case "application/x-www-form-urlencoded":
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return authRequest{}, badRequest("the body is not a URL-encoded form")
		}
		for _, name := range []string{"socket_id", "channel_name"} {
			if len(form[name]) > 1 {
				return authRequest{}, badRequest("%s given more than once", name)
			}
		}
		req = authRequest{SocketID: form.Get("socket_id"), ChannelName: form.Get("channel_name")}
	case "application/json":
		var fields struct {
			SocketID    *string `json:"socket_id"`
			ChannelName *string `json:"channel_name"`
		}
		dec := json.NewDecoder(strings.NewReader(string(body)))
		if err := dec.Decode(&fields); err != nil || dec.More() {
			return authRequest{}, badRequest("the body is not a JSON object of strings socket_id and channel_name")
		}
		if fields.SocketID != nil {
			req.SocketID = *fields.SocketID
		}
		if fields.ChannelName != nil {
			req.ChannelName = *fields.ChannelName
		}
	default:
		return authRequest{}, &requestError{status: http.StatusUnsupportedMediaType,
			reason: "Content-Type " + mediaType + " not supported: application/x-www-form-urlencoded or application/json"}
	}
	if req.SocketID == "" {
		return authRequest{}, badRequest("socket_id: required")
	}
	if len(req.SocketID) > domain.MaxSocketIDLength || !socketIDPattern.MatchString(req.SocketID) {
		return authRequest{}, badRequest("socket_id: not a Pusher socket id (digits.digits, at most %d characters)", domain.MaxSocketIDLength)
	}
	if needChannel && req.ChannelName == "" {
		return authRequest{}, badRequest("channel_name: required")
	}
	return req, nil
}

// parseChannel tells what a channel name asks for and the id it names. A
// name Pusher would not accept, or one of roomcast's channels whose id is
// not an id of the contract, is malformed (400); a well-formed name that is
// not one of roomcast's channels is otherChannel (403). The name is taken
// exactly as sent: nothing is trimmed, decoded or folded, so the channel
// checked is the channel signed.
func parseChannel(name string) (channelKind, string, error) {
	if len(name) > domain.MaxPusherChannelName {
		return 0, "", badRequest("channel_name: %d bytes, at most %d", len(name), domain.MaxPusherChannelName)
	}
	for i := 0; i < len(name); i++ {
		if !pusherChannelByte(name[i]) {
			return 0, "", badRequest("channel_name: character %d is not one of A-Z a-z 0-9 _ - = @ , . ;", i+1)
		}
	}
	for _, p := range []struct {
		prefix string
		kind   channelKind
	}{
		{domain.RoomChannelPrefix, roomChannel},
		{presenceRoomPrefix, presenceChannel},
		{domain.UserChannelPrefix, userChannel},
	} {
		if id, ok := strings.CutPrefix(name, p.prefix); ok {
			if !domain.IsValidID(id) {
				return 0, "", badRequest("channel_name: %q is not a valid id after %s", truncate(id, 64), p.prefix)
			}
			return p.kind, id, nil
		}
	}
	return otherChannel, "", nil
}

// pusherChannelByte is Pusher's channel name charset, which is also the
// contract's id charset.
func pusherChannelByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_-=@,.;", c) >= 0
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
