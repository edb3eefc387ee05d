package api

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/pusher/pusher-http-go/v5"

	"github.com/roomcast/roomcast/projections"
)

// pusherAuth is POST /pusher/auth: private and presence channel
// authorization as pusher-js asks for it. private-room-{roomId} and
// presence-room-{roomId} are for the room's members now (read on every
// request, so a member who left is refused at once), private-user-{userId}
// for that user; any other channel is refused. The answer is
// pusher-http-go's, signed over exactly the socket id and channel name
// that were checked.
func (s *Server) pusherAuth(w http.ResponseWriter, r *http.Request) {
	req, err := readAuthRequest(w, r, true)
	if err != nil {
		writeRequestError(w, err)
		return
	}
	kind, id, err := parseChannel(req.ChannelName)
	if err != nil {
		writeRequestError(w, err)
		return
	}
	user := userID(r)
	params := canonicalParams(req)
	var answer []byte
	switch kind {
	case userChannel:
		if id != user {
			s.forbid(w, r, req, "another user's channel")
			return
		}
		answer, err = s.cfg.Pusher.AuthorizePrivateChannel(params)
	case roomChannel, presenceChannel:
		member, ok, merr := projections.Membership(r.Context(), s.db, id, user)
		if merr != nil {
			s.log.Error("read membership", slog.String("room", id), slog.String("error", merr.Error()))
			writeError(w, http.StatusServiceUnavailable, "cannot read room membership now; retry")
			return
		}
		if !ok {
			s.forbid(w, r, req, "not a member of this room")
			return
		}
		if kind == roomChannel {
			answer, err = s.cfg.Pusher.AuthorizePrivateChannel(params)
		} else {
			answer, err = s.cfg.Pusher.AuthorizePresenceChannel(params, presenceMember(member))
		}
	default:
		s.forbid(w, r, req, "not a roomcast channel")
		return
	}
	if err != nil {
		// Not expected: the request was checked as pusher-http-go checks it.
		writeError(w, http.StatusBadRequest, "cannot sign this authorization")
		return
	}
	writeSigned(w, answer)
}

// userAuth is POST /pusher/user-auth: pusher-js signin. Any identified user
// may sign in as themselves, with the name and avatar of their latest room
// membership as user_info (none when they are in no room).
func (s *Server) userAuth(w http.ResponseWriter, r *http.Request) {
	req, err := readAuthRequest(w, r, false)
	if err != nil {
		writeRequestError(w, err)
		return
	}
	user := userID(r)
	data := map[string]any{"id": user}
	info, ok, err := latestMemberInfo(r.Context(), s.db, user)
	if err != nil {
		s.log.Error("read the user's membership", slog.String("error", err.Error()))
		writeError(w, http.StatusServiceUnavailable, "cannot read the user's membership now; retry")
		return
	}
	if ok {
		data["user_info"] = info
	}
	answer, err := s.cfg.Pusher.AuthenticateUser([]byte(url.Values{"socket_id": {req.SocketID}}.Encode()), data)
	if err != nil {
		writeError(w, http.StatusBadRequest, "cannot sign this authentication")
		return
	}
	writeSigned(w, answer)
}

// presenceMember is the channel_data of a presence channel: the member as
// the room knows them. Pusher's library carries strings only: a member
// without an avatar has "avatar": "".
func presenceMember(m projections.RoomMember) pusher.MemberData {
	avatar := ""
	if m.UserAvatar != nil {
		avatar = *m.UserAvatar
	}
	return pusher.MemberData{UserID: m.UserID, UserInfo: fitUserInfo(m.UserID, m.UserName, avatar)}
}

// maxUserObjectBytes is Pusher's limit on a presence member's user object
// ({user_id, user_info} as JSON): over it, the subscription is refused.
const maxUserObjectBytes = 1024

// fitUserInfo is {name, avatar} within maxUserObjectBytes: a member whose
// avatar URL (up to 2048 characters in the contract) does not fit is shown
// without it, and a name that still does not fit is cut, rather than the
// member not being able to subscribe at all.
func fitUserInfo(userID, name, avatar string) map[string]string {
	info := map[string]string{"name": name, "avatar": avatar}
	size := func() int {
		b, _ := json.Marshal(pusher.MemberData{UserID: userID, UserInfo: info})
		return len(b)
	}
	if size() <= maxUserObjectBytes {
		return info
	}
	info["avatar"] = ""
	for r := []rune(name); size() > maxUserObjectBytes && len(r) > 0; {
		r = r[:len(r)-1]
		info["name"] = string(r)
	}
	return info
}

// canonicalParams is what pusher-http-go reads: the checked fields and
// nothing else, whatever else the request carried.
func canonicalParams(req authRequest) []byte {
	return []byte(url.Values{"socket_id": {req.SocketID}, "channel_name": {req.ChannelName}}.Encode())
}

// forbid answers 403: the identity is known, the channel is not theirs.
func (s *Server) forbid(w http.ResponseWriter, r *http.Request, req authRequest, reason string) {
	s.log.Debug("channel authorization refused", slog.String("user", userID(r)),
		slog.String("channel", req.ChannelName), slog.String("reason", reason))
	writeError(w, http.StatusForbidden, reason)
}

// writeSigned answers 200 with pusher-http-go's JSON, which must not be
// cached: it holds a signature for one connection.
func writeSigned(w http.ResponseWriter, answer []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(answer)
}

func writeRequestError(w http.ResponseWriter, err error) {
	var re *requestError
	if errors.As(err, &re) {
		writeError(w, re.status, re.reason)
		return
	}
	writeError(w, http.StatusBadRequest, "malformed request")
}
