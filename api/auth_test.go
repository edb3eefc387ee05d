package api_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/pusher/pusher-http-go/v5"

	"github.com/roomcast/roomcast/internal/chattest"
)

const socket = "1234.5678"

// TestPusherAuthPrivateRoomForMembersOnly: a member gets the answer
// pusher-http-go gives for that socket and channel, byte for byte; a
// non-member and a room that does not exist get 403 alike.
func TestPusherAuthPrivateRoomForMembersOnly(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.project(t, member("room-1", "u-1", "Ada", "https://example.com/ada.png"), member("room-2", "u-2", "Bob", nil))

	a := f.authorize(t, "u-1", socket, "private-room-room-1")
	verifyChannelAuth(t, a, socket, "private-room-room-1")
	want, err := f.pusher.AuthorizePrivateChannel([]byte("socket_id=" + socket + "&channel_name=private-room-room-1"))
	if err != nil {
		t.Fatal(err)
	}
	if a.body != string(want) {
		t.Errorf("answer %s, want pusher-http-go's %s", a.body, want)
	}
	if cc := a.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	for _, channel := range []string{"private-room-room-2", "private-room-no-such-room"} {
		if a := f.authorize(t, "u-1", socket, channel); a.status != http.StatusForbidden {
			t.Errorf("u-1 on %s: %d %s, want 403", channel, a.status, a.body)
		} else {
			errorReason(t, a)
		}
	}
}

// TestPusherAuthPresenceRoomSignsTheMemberAsTheRoomKnowsThem: channel_data
// is {user_id, user_info: {name, avatar}} from room_members, signed with
// the channel, as pusher-http-go's AuthorizePresenceChannel makes it.
func TestPusherAuthPresenceRoomSignsTheMemberAsTheRoomKnowsThem(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.project(t, member("room-1", "u-1", "Ada", "https://example.com/ada.png"), member("room-1", "u-2", "Bob", nil))

	for _, tc := range []struct {
		user, data string
	}{
		{"u-1", `{"user_id":"u-1","user_info":{"avatar":"https://example.com/ada.png","name":"Ada"}}`},
		{"u-2", `{"user_id":"u-2","user_info":{"avatar":"","name":"Bob"}}`},
	} {
		a := f.authorize(t, tc.user, socket, "presence-room-room-1")
		if data := verifyChannelAuth(t, a, socket, "presence-room-room-1"); data != tc.data {
			t.Errorf("%s: channel_data %s, want %s", tc.user, data, tc.data)
		}
		var md pusher.MemberData
		if err := json.Unmarshal([]byte(tc.data), &md); err != nil {
			t.Fatal(err)
		}
		want, err := f.pusher.AuthorizePresenceChannel([]byte("socket_id="+socket+"&channel_name=presence-room-room-1"), md)
		if err != nil {
			t.Fatal(err)
		}
		if a.body != string(want) {
			t.Errorf("%s: answer %s, want pusher-http-go's %s", tc.user, a.body, want)
		}
	}
	if a := f.authorize(t, "u-3", socket, "presence-room-room-1"); a.status != http.StatusForbidden {
		t.Errorf("non-member on the presence channel: %d %s, want 403", a.status, a.body)
	}
}

// TestPusherAuthPresenceMemberFitsPusherLimit: Pusher refuses a presence
// member whose user object is over 1 KB; the contract allows a 2048-
// character avatar and a 200-character name. The avatar is dropped, then
// the name cut, rather than the member being unable to subscribe.
func TestPusherAuthPresenceMemberFitsPusherLimit(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	longAvatar := "https://example.com/" + strings.Repeat("a", 2000)
	f.project(t, member("room-1", "u-1", "Ada", longAvatar), member("room-1", "u-2", strings.Repeat("<", 200), nil))
	data := verifyChannelAuth(t, f.authorize(t, "u-1", socket, "presence-room-room-1"), socket, "presence-room-room-1")
	if want := `{"user_id":"u-1","user_info":{"avatar":"","name":"Ada"}}`; data != want {
		t.Errorf("a 2020-character avatar: channel_data %s, want %s", data, want)
	}
	data = verifyChannelAuth(t, f.authorize(t, "u-2", socket, "presence-room-room-1"), socket, "presence-room-room-1")
	var md pusher.MemberData
	if err := json.Unmarshal([]byte(data), &md); err != nil {
		t.Fatal(err)
	}
	if len(data) > 1024 || len(md.UserInfo["name"]) < 100 || strings.Trim(md.UserInfo["name"], "<") != "" {
		t.Errorf("a 200-character name escaped past 1 KB: channel_data of %d bytes, name %q; want at most 1024 bytes with as much of the name as fits", len(data), md.UserInfo["name"])
	}
}

func TestPusherAuthUserChannelForThatUserOnly(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	verifyChannelAuth(t, f.authorize(t, "u-1", socket, "private-user-u-1"), socket, "private-user-u-1")
	for _, channel := range []string{"private-user-u-2", "private-user-u-1x", "private-user-U-1", "private-user-u-1;private-user-u-2"} {
		if a := f.authorize(t, "u-1", socket, channel); a.status != http.StatusForbidden {
			t.Errorf("u-1 on %q: %d %s, want 403", channel, a.status, a.body)
		}
	}
}

// TestPusherAuthMemberWhoLeftIsRefused: membership is read on every
// request, so the authorization after member.left fails, and works again
// after a new member.joined.
func TestPusherAuthMemberWhoLeftIsRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.project(t, member("room-1", "u-1", "Ada", nil))
	for _, channel := range []string{"private-room-room-1", "presence-room-room-1"} {
		verifyChannelAuth(t, f.authorize(t, "u-1", socket, channel), socket, channel)
	}
	f.project(t, chattest.MemberLeft("room-1", "u-1"))
	for _, channel := range []string{"private-room-room-1", "presence-room-room-1"} {
		if a := f.authorize(t, "u-1", socket, channel); a.status != http.StatusForbidden {
			t.Errorf("after member.left, %s: %d %s, want 403", channel, a.status, a.body)
		}
	}
	f.project(t, member("room-1", "u-1", "Ada again", nil))
	data := verifyChannelAuth(t, f.authorize(t, "u-1", socket, "presence-room-room-1"), socket, "presence-room-room-1")
	if !strings.Contains(data, `"name":"Ada again"`) {
		t.Errorf("after joining again, channel_data %s, want the new name", data)
	}
}

// TestPusherAuthChannelNameTricks: no spelling of a channel name gets an
// authorization the user should not have. Names outside Pusher's and the
// contract's charset are 400; well-formed names that are not the user's
// are 403; and what is signed is exactly the name that was checked.
func TestPusherAuthChannelNameTricks(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.project(t, member("room-1", "u-1", "Ada", nil), member("room-2", "u-2", "Bob", nil))
	long := strings.Repeat("a", 129)
	for _, tc := range []struct {
		channel string
		status  int
	}{
		// prefix confusion
		{"private-roomroom-2", 403},
		{"private-room", 403},
		{"private-rooms-room-2", 403},
		{"PRIVATE-ROOM-room-2", 403},
		{"private-Room-room-2", 403},
		{"presence-user-u-2", 403},
		{"private-encrypted-room-2", 403},
		{"private-room-room-2", 403},
		{"presence-room-room-2", 403},
		{"private-room-room-1;private-room-room-2", 403}, // one id with a ';', no such room
		{"private-room-", 400},
		{"presence-room-", 400},
		{"private-user-", 400},
		// encoded characters: taken as they are, never decoded again
		{"private-room-room%2d2", 400},
		{"private%2droom-room-2", 400},
		{"private-room-room-1%00", 400},
		{"private-room-room-1\x00", 400},
		// unicode look-alikes
		{"private\u2010room-room-1", 400},      // hyphen
		{"private-room-r\u043e\u043em-1", 400}, // Cyrillic o
		{"\uff50rivate-room-room-1", 400},      // fullwidth p
		{"private-room-room\u20111", 400},      // non-breaking hyphen
		// ids outside the contract's charset
		{"private-room-room/1", 400},
		{"private-room-room 1", 400},
		{"private-room-room#1", 400},
		{"private-room-room:1", 400},
		{"private-room-" + long, 400}, // a 129-character id
		{"private-user-u-1|admin", 400},
		// surrounding space
		{"private-room-room-1 ", 400},
		{" private-room-room-1", 400},
		{"private-room-room-1\n", 400},
		{"private-room-room-1\r\n", 400},
		{"private-room-room-1\t", 400},
		// very long
		{"private-room-" + strings.Repeat("a", 200), 400},
	} {
		a := f.authorize(t, "u-1", socket, tc.channel)
		if a.status != tc.status {
			t.Errorf("u-1 on %q: %d %s, want %d", tc.channel, a.status, a.body, tc.status)
			continue
		}
		errorReason(t, a)
	}

	// Form encoding is HTTP's, not the channel's: %2d in the body is the
	// '-' pusher-js sent, and the signature covers the decoded name.
	a := f.post(t, "/pusher/auth", "u-1", "application/x-www-form-urlencoded", "socket_id="+socket+"&channel_name=private%2droom%2droom-1")
	verifyChannelAuth(t, a, socket, "private-room-room-1")
	a = f.post(t, "/pusher/auth", "u-1", "application/x-www-form-urlencoded", "socket_id="+socket+"&channel_name=private%2droom%2droom-2")
	if a.status != http.StatusForbidden {
		t.Errorf("encoded name of another room: %d %s, want 403", a.status, a.body)
	}
	// A body too long for any channel name is refused before it is read.
	a = f.authorize(t, "u-1", socket, "private-room-"+strings.Repeat("a", 20000))
	if a.status != http.StatusRequestEntityTooLarge {
		t.Errorf("20,000-character channel name: %d %s, want 413", a.status, a.body)
	}
}

// TestPusherAuthMalformedRequests: socket ids and bodies pusher-js would
// not send are 400 (415 for a content type it does not use), and the
// same request as JSON gets the same answer as the form.
func TestPusherAuthMalformedRequests(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.project(t, member("room-1", "u-1", "Ada", nil))
	const form = "application/x-www-form-urlencoded"
	for _, sid := range []string{"", "1234", "1234.", ".5678", "1.2.3", "a.b", "1234.5678 ", " 1234.5678", "1234.5678\n",
		"-1.5", "1e3.5", "\uff11.\uff12", "1234,5678", strings.Repeat("1", 40) + "." + strings.Repeat("2", 40)} {
		if a := f.authorize(t, "u-1", sid, "private-room-room-1"); a.status != http.StatusBadRequest {
			t.Errorf("socket id %q: %d %s, want 400", sid, a.status, a.body)
		}
	}
	for _, tc := range []struct {
		what, contentType, body string
		status                  int
	}{
		{"no channel", form, "socket_id=" + socket, 400},
		{"channel given twice", form, "socket_id=" + socket + "&channel_name=private-room-room-1&channel_name=private-room-room-2", 400},
		{"socket given twice", form, "socket_id=" + socket + "&socket_id=1.1&channel_name=private-room-room-1", 400},
		{"not a form", form, "socket_id=%zz", 400},
		{"JSON of the wrong types", "application/json", `{"socket_id": 1234.5678, "channel_name": "private-room-room-1"}`, 400},
		{"JSON, two values", "application/json", `{"socket_id":"1.2","channel_name":"private-room-room-1"} {}`, 400},
		{"not JSON", "application/json", `socket_id=1.2`, 400},
		{"text", "text/plain", "socket_id=" + socket + "&channel_name=private-room-room-1", 415},
	} {
		if a := f.post(t, "/pusher/auth", "u-1", tc.contentType, tc.body); a.status != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.what, a.status, a.body, tc.status)
		} else {
			errorReason(t, a)
		}
	}

	asForm := f.authorize(t, "u-1", socket, "presence-room-room-1")
	asJSON := f.post(t, "/pusher/auth", "u-1", "application/json; charset=utf-8", `{"socket_id":"`+socket+`","channel_name":"presence-room-room-1"}`)
	verifyChannelAuth(t, asJSON, socket, "presence-room-room-1")
	if asJSON.body != asForm.body {
		t.Errorf("JSON request answered %s, the form %s: want the same", asJSON.body, asForm.body)
	}
	// pusher-js may send the app's own params besides its two: ignored.
	extra := f.post(t, "/pusher/auth", "u-1", form, url.Values{"socket_id": {socket}, "channel_name": {"presence-room-room-1"}, "team": {"x"}}.Encode())
	if extra.body != asForm.body {
		t.Errorf("with an extra param: %s, want %s", extra.body, asForm.body)
	}
}

// TestPusherUserAuthSignsTheUser: pusher-js signin gets pusher-http-go's
// AuthenticateUser answer for the identified user, with the name and
// avatar of their latest membership.
func TestPusherUserAuthSignsTheUser(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.project(t, member("room-1", "u-1", "Ada", nil), member("room-2", "u-1", "Ada L.", "https://example.com/ada.png"))
	for _, tc := range []struct {
		user, data string
	}{
		{"u-1", `{"id":"u-1","user_info":{"avatar":"https://example.com/ada.png","name":"Ada L."}}`},
		{"u-9", `{"id":"u-9"}`}, // in no room
	} {
		a := f.post(t, "/pusher/user-auth", tc.user, "application/x-www-form-urlencoded", "socket_id="+socket)
		if a.status != http.StatusOK {
			t.Fatalf("%s: %d %s, want 200", tc.user, a.status, a.body)
		}
		var got struct {
			Auth     string `json:"auth"`
			UserData string `json:"user_data"`
		}
		if err := json.Unmarshal([]byte(a.body), &got); err != nil {
			t.Fatal(err)
		}
		if got.UserData != tc.data {
			t.Errorf("%s: user_data %s, want %s", tc.user, got.UserData, tc.data)
		}
		if want := pusherKey + ":" + hmacHex(socket+"::user::"+got.UserData); got.Auth != want {
			t.Errorf("%s: auth %s, want %s", tc.user, got.Auth, want)
		}
	}
	if a := f.post(t, "/pusher/user-auth", "u-1", "application/x-www-form-urlencoded", "socket_id=1.2.3"); a.status != http.StatusBadRequest {
		t.Errorf("malformed socket id: %d %s, want 400", a.status, a.body)
	}
}

// TestAPIRequiresAnIdentity: without a valid token every API route is 401
// with a JSON reason and a Bearer challenge, and neither the token nor a
// secret reaches the logs.
func TestAPIRequiresAnIdentity(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.project(t, member("room-1", "u-1", "Ada", nil))
	expired := hs256(t, testSecret, claims("u-1", "iss", nil, "aud", nil, "exp", int64(1)))
	for _, tc := range []struct {
		what, authorization, reason string
	}{
		{"no token", "", "no bearer token"},
		{"expired", "Bearer " + expired, "token expired"},
		{"basic", "Basic dTE6cGFzc3dvcmQ=", "not a bearer token"},
		{"user id outside the contract", "Bearer " + hs256(t, testSecret, claims("auth0|u-1", "iss", nil, "aud", nil)), "not a roomcast id"},
	} {
		for _, path := range []string{"/pusher/auth", "/pusher/user-auth"} {
			req, _ := http.NewRequest(http.MethodPost, f.server.URL+path, strings.NewReader("socket_id="+socket+"&channel_name=private-room-room-1"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tc.authorization != "" {
				req.Header.Set("Authorization", tc.authorization)
			}
			a := do(t, req)
			if a.status != http.StatusUnauthorized {
				t.Errorf("%s on %s: %d %s, want 401", tc.what, path, a.status, a.body)
				continue
			}
			if reason := errorReason(t, a); !strings.Contains(reason, tc.reason) {
				t.Errorf("%s on %s: reason %q, want %q", tc.what, path, reason, tc.reason)
			}
			if !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Bearer ") {
				t.Errorf("%s on %s: WWW-Authenticate %q, want a Bearer challenge", tc.what, path, a.header.Get("WWW-Authenticate"))
			}
		}
	}
	logs := f.logs.String()
	if !strings.Contains(logs, "request without identity") {
		t.Errorf("the refusals were not logged at debug:\n%s", logs)
	}
	for _, secret := range []string{expired, string(testSecret), pusherSecret, "dTE6cGFzc3dvcmQ="} {
		if strings.Contains(logs, secret) {
			t.Errorf("the logs hold a token or secret %q:\n%s", secret, logs)
		}
	}
}
