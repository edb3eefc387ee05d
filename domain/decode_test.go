package domain_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/domain"
)

type obj = map[string]any

// absent, as a value given to with, removes the key.
var absent = &struct{}{}

func envelope(typ domain.EventType, data any) obj {
	return obj{
		"specversion":     "1.0",
		"id":              "9f1c0a3e-6a51-4c38-9b0e-2f7d3c1b9a10",
		"source":          "/services/chat-api",
		"type":            string(typ),
		"time":            "2026-11-27T08:00:00.000Z",
		"subject":         "room-42",
		"datacontenttype": "application/json",
		"data":            data,
	}
}

func messageCreated() obj {
	return obj{"roomId": "room-42", "messageId": "m-1", "authorId": "u-7", "authorName": "Ada",
		"authorAvatar": nil, "content": "hello", "createdAt": "2026-11-27T08:00:00.000Z"}
}

func messageEdited() obj {
	return obj{"roomId": "room-42", "messageId": "m-1", "content": "hello again",
		"editedAt": "2026-11-27T08:01:00.500Z", "editorId": "u-7"}
}

func messageDeleted() obj {
	return obj{"roomId": "room-42", "messageId": "m-1", "deletedAt": "2026-11-27T08:02:00Z", "deletedBy": "mod@1"}
}

func memberJoined() obj {
	return obj{"roomId": "room-42", "userId": "u-8", "userName": "Grace",
		"userAvatar": "https://example.com/g.png", "joinedAt": "2026-11-27T09:00:00+01:00"}
}

func memberLeft() obj {
	return obj{"roomId": "room-42", "userId": "u-8", "leftAt": "2026-11-27T08:03:00.123456789Z"}
}

func notification() obj {
	return obj{"id": "n-1", "type": "mention", "title": "You were mentioned", "body": "Ada mentioned you"}
}

func userNotification() obj {
	return obj{"userIds": []any{"u-2", "u-1", "u-2", "u-3", "u-1"}, "notification": notification()}
}

func roomsNotification() obj {
	return obj{"roomIds": []any{"room-1", "room-2"},
		"notification": with(notification(), "url", "https://example.com/n/1")}
}

// with returns a copy of m with the pairs key, value set (absent removes key).
func with(m obj, kv ...any) obj {
	out := make(obj, len(m)+len(kv)/2)
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == absent {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func ids(n int, prefix string) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}

func ptr(s string) *string { return &s }

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestDecodeValid(t *testing.T) {
	created := func(data obj) []byte { return encode(envelope(domain.TypeMessageCreated, data)) }
	tests := []struct {
		name  string
		value []byte
		check func(t *testing.T, env domain.Envelope)
	}{
		{
			name:  "message created, the contract's example",
			value: created(messageCreated()),
			check: func(t *testing.T, env domain.Envelope) {
				wantEnvelope(t, env, domain.Envelope{
					ID: "9f1c0a3e-6a51-4c38-9b0e-2f7d3c1b9a10", Source: "/services/chat-api",
					Type: domain.TypeMessageCreated, Subject: "room-42", Time: mustTime("2026-11-27T08:00:00.000Z"),
				})
				wantEvent(t, env, domain.MessageCreated{RoomID: "room-42", MessageID: "m-1", AuthorID: "u-7",
					AuthorName: "Ada", AuthorAvatar: nil, Content: "hello", CreatedAt: mustTime("2026-11-27T08:00:00Z")})
			},
		},
		{
			name:  "message created with an avatar",
			value: created(with(messageCreated(), "authorAvatar", "https://example.com/a.png")),
			check: func(t *testing.T, env domain.Envelope) {
				e := env.Event.(domain.MessageCreated)
				if e.AuthorAvatar == nil || *e.AuthorAvatar != "https://example.com/a.png" {
					t.Errorf("AuthorAvatar = %v, want the URL", e.AuthorAvatar)
				}
			},
		},
		{
			name:  "message created without authorAvatar",
			value: created(with(messageCreated(), "authorAvatar", absent)),
			check: func(t *testing.T, env domain.Envelope) {
				if e := env.Event.(domain.MessageCreated); e.AuthorAvatar != nil {
					t.Errorf("AuthorAvatar = %q, want nil", *e.AuthorAvatar)
				}
			},
		},
		{
			name:  "message edited",
			value: encode(envelope(domain.TypeMessageEdited, messageEdited())),
			check: func(t *testing.T, env domain.Envelope) {
				wantEvent(t, env, domain.MessageEdited{RoomID: "room-42", MessageID: "m-1", Content: "hello again",
					EditedAt: mustTime("2026-11-27T08:01:00.500Z"), EditorID: "u-7"})
			},
		},
		{
			name:  "message deleted",
			value: encode(envelope(domain.TypeMessageDeleted, messageDeleted())),
			check: func(t *testing.T, env domain.Envelope) {
				wantEvent(t, env, domain.MessageDeleted{RoomID: "room-42", MessageID: "m-1",
					DeletedAt: mustTime("2026-11-27T08:02:00Z"), DeletedBy: "mod@1"})
			},
		},
		{
			name:  "member joined, time offset kept as parsed",
			value: encode(envelope(domain.TypeMemberJoined, memberJoined())),
			check: func(t *testing.T, env domain.Envelope) {
				wantEvent(t, env, domain.MemberJoined{RoomID: "room-42", UserID: "u-8", UserName: "Grace",
					UserAvatar: ptr("https://example.com/g.png"), JoinedAt: mustTime("2026-11-27T09:00:00+01:00")})
				e := env.Event.(domain.MemberJoined)
				if _, offset := e.JoinedAt.Zone(); offset != 3600 {
					t.Errorf("JoinedAt offset = %d, want 3600", offset)
				}
				if !e.JoinedAt.Equal(mustTime("2026-11-27T08:00:00Z")) {
					t.Errorf("JoinedAt = %v, want 08:00 UTC", e.JoinedAt)
				}
			},
		},
		{
			name:  "member joined with null userAvatar",
			value: encode(envelope(domain.TypeMemberJoined, with(memberJoined(), "userAvatar", nil))),
			check: func(t *testing.T, env domain.Envelope) {
				if e := env.Event.(domain.MemberJoined); e.UserAvatar != nil {
					t.Errorf("UserAvatar = %q, want nil", *e.UserAvatar)
				}
			},
		},
		{
			name:  "member left, nanoseconds kept",
			value: encode(envelope(domain.TypeMemberLeft, memberLeft())),
			check: func(t *testing.T, env domain.Envelope) {
				wantEvent(t, env, domain.MemberLeft{RoomID: "room-42", UserID: "u-8",
					LeftAt: mustTime("2026-11-27T08:03:00.123456789Z")})
			},
		},
		{
			name:  "user notification, duplicates removed in first-appearance order",
			value: encode(envelope(domain.TypeUserNotification, userNotification())),
			check: func(t *testing.T, env domain.Envelope) {
				wantEvent(t, env, domain.UserNotification{UserIDs: []string{"u-2", "u-1", "u-3"},
					Notification: domain.Notification{ID: "n-1", Type: "mention", Title: "You were mentioned",
						Body: "Ada mentioned you"}})
				if got := domain.PartitionKey(env.Event); got != "u-2" {
					t.Errorf("PartitionKey = %q, want u-2", got)
				}
			},
		},
		{
			name:  "rooms notification with url",
			value: encode(envelope(domain.TypeRoomsNotification, roomsNotification())),
			check: func(t *testing.T, env domain.Envelope) {
				wantEvent(t, env, domain.RoomsNotification{RoomIDs: []string{"room-1", "room-2"},
					Notification: domain.Notification{ID: "n-1", Type: "mention", Title: "You were mentioned",
						Body: "Ada mentioned you", URL: ptr("https://example.com/n/1")}})
			},
		},
		{
			name: "notification with empty body, null url and any characters in its id",
			value: encode(envelope(domain.TypeUserNotification, obj{"userIds": []any{"u-1"},
				"notification": with(notification(), "id", "n 1/ü", "body", "", "url", nil)})),
			check: func(t *testing.T, env domain.Envelope) {
				n := env.Event.(domain.UserNotification).Notification
				if n.ID != "n 1/ü" || n.Body != "" || n.URL != nil {
					t.Errorf("Notification = %+v", n)
				}
			},
		},
		{
			name:  "1000 user ids",
			value: encode(envelope(domain.TypeUserNotification, obj{"userIds": ids(1000, "u-"), "notification": notification()})),
			check: func(t *testing.T, env domain.Envelope) {
				if n := len(env.Event.(domain.UserNotification).UserIDs); n != 1000 {
					t.Errorf("len(UserIDs) = %d, want 1000", n)
				}
			},
		},
		{
			name: "time, subject and datacontenttype absent or null",
			value: encode(with(envelope(domain.TypeMessageCreated, messageCreated()),
				"time", nil, "subject", absent, "datacontenttype", nil)),
			check: func(t *testing.T, env domain.Envelope) {
				if !env.Time.IsZero() || env.Subject != "" {
					t.Errorf("Time = %v, Subject = %q, want zero", env.Time, env.Subject)
				}
			},
		},
		{
			name:  "timestamps with offsets and fractions",
			value: created(with(messageCreated(), "createdAt", "2026-11-27T23:59:59.1-00:00")),
			check: func(t *testing.T, env domain.Envelope) {
				if got := env.Event.(domain.MessageCreated).CreatedAt; !got.Equal(mustTime("2026-11-27T23:59:59.100Z")) {
					t.Errorf("CreatedAt = %v", got)
				}
			},
		},
		{
			name:  "datacontenttype with parameters",
			value: encode(with(envelope(domain.TypeMessageCreated, messageCreated()), "datacontenttype", "Application/JSON; charset=utf-8")),
		},
		{
			name:  "4000 CJK characters",
			value: created(with(messageCreated(), "content", strings.Repeat("漢", 4000))),
			check: func(t *testing.T, env domain.Envelope) {
				if got := env.Event.(domain.MessageCreated).Content; got != strings.Repeat("漢", 4000) {
					t.Errorf("Content has %d bytes", len(got))
				}
			},
		},
		{
			name:  "2000 emoji are 4000 UTF-16 units",
			value: created(with(messageCreated(), "content", strings.Repeat("😀", 2000))),
		},
		{
			name:  "200 characters of name, 2048 of avatar",
			value: created(with(messageCreated(), "authorName", strings.Repeat("é", 200), "authorAvatar", strings.Repeat("a", 2048))),
		},
		{
			name:  "128-character id of every allowed character",
			value: created(with(messageCreated(), "roomId", strings.Repeat("Az09_-=@,.;", 12)[:128])),
		},
		{
			name:  "escapes are decoded, in keys too; an escaped backslash before u0000 is no NUL",
			value: []byte(`{"specversion":"1.0","id":"e\u002d1","source":"s","type":"chat.message.edited","data":{"room\u0049d":"r","messageId":"m","content":"\"q\"\n\\u0000 \ud83d\ude00","editedAt":"2026-11-27T08:00:00Z","editorId":"u"}}`),
			check: func(t *testing.T, env domain.Envelope) {
				if env.ID != "e-1" {
					t.Errorf("ID = %q, want e-1", env.ID)
				}
				if got, want := env.Event.(domain.MessageEdited).Content, "\"q\"\n\\u0000 😀"; got != want {
					t.Errorf("Content = %q, want %q", got, want)
				}
			},
		},
		{
			name: "unknown fields are ignored and kept in Data",
			value: []byte(`{"specversion":"1.0","id":"e-1","source":"s","type":"chat.member.left","traceparent":"00-abc","extra":{"a":[1,2]},` +
				`"data": {"roomId":"r","userId":"u","leftAt":"2026-11-27T08:00:00Z","reason":{"kick":true},"RoomId":5} }`),
			check: func(t *testing.T, env domain.Envelope) {
				want := `{"roomId":"r","userId":"u","leftAt":"2026-11-27T08:00:00Z","reason":{"kick":true},"RoomId":5}`
				if string(env.Data) != want {
					t.Errorf("Data = %s, want %s", env.Data, want)
				}
			},
		},
		{
			name:  "socketId in data",
			value: created(with(messageCreated(), "socketId", "123.456")),
			check: func(t *testing.T, env domain.Envelope) { wantSocketID(t, env, "123.456") },
		},
		{
			name:  "socketid extension attribute",
			value: encode(with(envelope(domain.TypeMessageDeleted, messageDeleted()), "socketid", "7.8")),
			check: func(t *testing.T, env domain.Envelope) { wantSocketID(t, env, "7.8") },
		},
		{
			name:  "data.socketId wins over the extension, which is then not checked",
			value: encode(with(envelope(domain.TypeMemberLeft, with(memberLeft(), "socketId", "1.2")), "socketid", "bad")),
			check: func(t *testing.T, env domain.Envelope) { wantSocketID(t, env, "1.2") },
		},
		{
			name:  "null socketId is absent",
			value: encode(with(envelope(domain.TypeMemberLeft, with(memberLeft(), "socketId", nil)), "socketid", nil)),
			check: func(t *testing.T, env domain.Envelope) { wantSocketID(t, env, "") },
		},
		{
			name:  "socket ids on notifications are ignored",
			value: encode(with(envelope(domain.TypeUserNotification, with(userNotification(), "socketId", 5)), "socketid", "x")),
			check: func(t *testing.T, env domain.Envelope) { wantSocketID(t, env, "") },
		},
		{
			name:  "data_base64 null is absent",
			value: encode(with(envelope(domain.TypeMessageCreated, messageCreated()), "data_base64", nil)),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := domain.Decode(tt.value)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if env.Event == nil || env.Event.EventType() != env.Type {
				t.Fatalf("Event = %#v for type %s", env.Event, env.Type)
			}
			if domain.PartitionKey(env.Event) == "" {
				t.Error("PartitionKey is empty")
			}
			if !json.Valid(env.Data) || env.Data[0] != '{' {
				t.Errorf("Data = %s, want a JSON object", env.Data)
			}
			if tt.check != nil {
				tt.check(t, env)
			}
		})
	}
}

func wantEnvelope(t *testing.T, got, want domain.Envelope) {
	t.Helper()
	if got.ID != want.ID || got.Source != want.Source || got.Type != want.Type ||
		got.Subject != want.Subject || !got.Time.Equal(want.Time) || got.SocketID != want.SocketID {
		t.Errorf("Envelope = %+v, want %+v", got, want)
	}
}

func wantEvent(t *testing.T, env domain.Envelope, want domain.Event) {
	t.Helper()
	if !reflect.DeepEqual(env.Event, want) {
		t.Errorf("Event = %#v\nwant %#v", env.Event, want)
	}
}

func wantSocketID(t *testing.T, env domain.Envelope, want string) {
	t.Helper()
	if env.SocketID != want {
		t.Errorf("SocketID = %q, want %q", env.SocketID, want)
	}
}

// kinds are the finer sentinels; every violation matches exactly one.
var kinds = []error{domain.ErrNotJSON, domain.ErrSpecVersion, domain.ErrUnknownType, domain.ErrMissingField,
	domain.ErrInvalidID, domain.ErrContentTooLong, domain.ErrTooLong, domain.ErrEmpty, domain.ErrInvalidTime,
	domain.ErrInvalidField}

func TestDecodeInvalid(t *testing.T) {
	created := func(kv ...any) []byte {
		return encode(envelope(domain.TypeMessageCreated, with(messageCreated(), kv...)))
	}
	top := func(kv ...any) []byte {
		return encode(with(envelope(domain.TypeMessageCreated, messageCreated()), kv...))
	}
	notif := func(typ domain.EventType, data obj) []byte { return encode(envelope(typ, data)) }
	withNotification := func(kv ...any) []byte {
		return notif(domain.TypeUserNotification, with(userNotification(), "notification", with(notification(), kv...)))
	}
	tests := []struct {
		name  string
		value []byte
		kind  error
		want  string // a part of Error(), or all of it when it starts with "invalid event: "
	}{
		// The value as a whole.
		{"not JSON", []byte(`{"specversion":`), domain.ErrNotJSON, "invalid event: not JSON: unexpected end of JSON input (byte 15)"},
		{"syntax error", []byte(`{"a" 1}`), domain.ErrNotJSON, "invalid event: not JSON: invalid character '1' after object key (byte 6)"},
		{"empty value", nil, domain.ErrNotJSON, "not JSON"},
		{"trailing garbage", append(top(), '}'), domain.ErrNotJSON, "not JSON"},
		{"array", []byte(` [1]`), domain.ErrNotJSON, "invalid event: not a JSON object (got array)"},
		{"null", []byte(`null`), domain.ErrNotJSON, "invalid event: not a JSON object (got null)"},
		{"string", []byte(`"x"`), domain.ErrNotJSON, "not a JSON object (got string)"},
		{"invalid UTF-8", []byte("{\"specversion\":\"1.0\",\"data\":{\"content\":\"a\xff\"}}"), domain.ErrNotJSON, "invalid event: not valid UTF-8 (byte 41)"},
		{"overlong UTF-8", []byte("{\"a\":\"\xc0\xaf\"}"), domain.ErrNotJSON, "not valid UTF-8"},

		// Envelope attributes.
		{"specversion 0.3", top("specversion", "0.3"), domain.ErrSpecVersion, `invalid event: specversion "0.3": want "1.0"`},
		{"specversion missing", top("specversion", absent), domain.ErrMissingField, "invalid event: specversion: missing"},
		{"specversion a number", []byte(`{"specversion":1.0}`), domain.ErrInvalidField, "invalid event: specversion: want a string, got number"},
		{"specversion wrong case key", bytesReplace(top(), `"specversion"`, `"specVersion"`), domain.ErrMissingField, "specversion: missing"},
		{"unknown type", top("type", "chat.foo"), domain.ErrUnknownType, `invalid event: type "chat.foo": unknown event type`},
		{"type missing", top("type", absent), domain.ErrMissingField, "invalid event: type: missing"},
		{"type null", top("type", nil), domain.ErrMissingField, "invalid event: type: missing"},
		{"type long and odd", top("type", strings.Repeat("x\n", 300)), domain.ErrUnknownType, `type "x\nx\n`},
		{"id missing", top("id", absent), domain.ErrMissingField, "invalid event: id: missing"},
		{"id empty", top("id", ""), domain.ErrEmpty, "invalid event: id: empty, at least 1 character"},
		{"id 257 characters", top("id", strings.Repeat("i", 257)), domain.ErrTooLong, "invalid event: id: 257 characters, at most 256"},
		{"id with NUL", top("id", "a\x00b"), domain.ErrInvalidField, `invalid event: id: contains NUL (\u0000)`},
		{"id a number", top("id", 5), domain.ErrInvalidField, "invalid event: id: want a string, got number"},
		{"source missing", top("source", absent), domain.ErrMissingField, "invalid event: source: missing"},
		{"source empty", top("source", ""), domain.ErrEmpty, "invalid event: source: empty, at least 1 character"},
		{"subject an object", top("subject", obj{}), domain.ErrInvalidField, "invalid event: subject: want a string, got object"},
		{"subject with NUL", top("subject", "\x00"), domain.ErrInvalidField, "subject: contains NUL"},
		{"time not RFC 3339", top("time", "yesterday"), domain.ErrInvalidTime, `invalid event: time "yesterday": not an RFC 3339 time`},
		{"time a number", top("time", 1764230400), domain.ErrInvalidField, "invalid event: time: want a string, got number"},
		{"datacontenttype text", top("datacontenttype", "text/plain"), domain.ErrInvalidField, `invalid event: datacontenttype "text/plain": want "application/json"`},
		{"datacontenttype empty", top("datacontenttype", ""), domain.ErrInvalidField, `datacontenttype "": want`},
		{"data missing", top("data", absent), domain.ErrMissingField, "invalid event: data: missing"},
		{"data null", top("data", nil), domain.ErrMissingField, "invalid event: data: missing"},
		{"data a string", top("data", `{"roomId":"r"}`), domain.ErrInvalidField, "invalid event: data: want a JSON object, got string"},
		{"data an array", top("data", []any{}), domain.ErrInvalidField, "invalid event: data: want a JSON object, got array"},
		{"data_base64", top("data", absent, "data_base64", "e30="), domain.ErrInvalidField, "invalid event: data_base64: not supported, data must be a JSON object"},
		{"data and data_base64", top("data_base64", "e30="), domain.ErrInvalidField, "data_base64: not supported"},

		// Ids.
		{"roomId missing", created("roomId", absent), domain.ErrMissingField, "invalid event: data.roomId: missing"},
		{"roomId null", created("roomId", nil), domain.ErrMissingField, "invalid event: data.roomId: missing"},
		{"roomid, wrong case", bytesReplace(created(), `"roomId"`, `"roomid"`), domain.ErrMissingField, "invalid event: data.roomId: missing"},
		{"roomId with a space", created("roomId", "a b"), domain.ErrInvalidID, `invalid event: data.roomId "a b": not a valid id (1..128 of [A-Za-z0-9_-=@,.;])`},
		{"roomId non-ASCII", created("roomId", "ré"), domain.ErrInvalidID, `data.roomId "ré": not a valid id (1..128 of`},
		{"roomId of 100 non-ASCII characters", created("roomId", strings.Repeat("é", 100)), domain.ErrInvalidID, `not a valid id (1..128 of`},
		{"roomId empty", created("roomId", ""), domain.ErrInvalidID, `invalid event: data.roomId "": not a valid id (empty)`},
		{"roomId 129 characters", created("roomId", strings.Repeat("r", 129)), domain.ErrInvalidID,
			`invalid event: data.roomId "` + strings.Repeat("r", 64) + `"...: not a valid id (129 characters, at most 128)`},
		{"roomId a number", created("roomId", 42), domain.ErrInvalidField, "invalid event: data.roomId: want a string, got number"},
		{"messageId bad", created("messageId", "m/1"), domain.ErrInvalidID, `data.messageId "m/1"`},
		{"authorId with NUL", created("authorId", "u\x00"), domain.ErrInvalidField, `invalid event: data.authorId: contains NUL (\u0000)`},
		{"editorId missing", encode(envelope(domain.TypeMessageEdited, with(messageEdited(), "editorId", absent))), domain.ErrMissingField, "data.editorId: missing"},
		{"deletedBy bad", encode(envelope(domain.TypeMessageDeleted, with(messageDeleted(), "deletedBy", "a:b"))), domain.ErrInvalidID, `data.deletedBy "a:b"`},
		{"userId bad", encode(envelope(domain.TypeMemberLeft, with(memberLeft(), "userId", "#"))), domain.ErrInvalidID, `data.userId "#"`},

		// Texts.
		{"4001 CJK characters", created("content", strings.Repeat("漢", 4001)), domain.ErrContentTooLong, "invalid event: data.content: 4001 characters, at most 4000"},
		{"2001 emoji", created("content", strings.Repeat("😀", 2001)), domain.ErrContentTooLong, "invalid event: data.content: 4002 characters, at most 4000"},
		{"edited content too long", encode(envelope(domain.TypeMessageEdited, with(messageEdited(), "content", strings.Repeat("a", 4001)))), domain.ErrContentTooLong, "data.content: 4001 characters"},
		{"content empty", created("content", ""), domain.ErrEmpty, "invalid event: data.content: empty, at least 1 character"},
		{"content a number", created("content", 5), domain.ErrInvalidField, "invalid event: data.content: want a string, got number"},
		{"content an array", created("content", []any{"a"}), domain.ErrInvalidField, "data.content: want a string, got array"},
		{"content boolean", created("content", true), domain.ErrInvalidField, "data.content: want a string, got boolean"},
		{"NUL in content", created("content", "a\x00b"), domain.ErrInvalidField, `invalid event: data.content: contains NUL (\u0000)`},
		{"unpaired high surrogate in content", bytesReplace(created(), `"hello"`, `"hi \ud83d"`), domain.ErrInvalidField, `invalid event: data.content: contains an unpaired UTF-16 surrogate (\ud83d)`},
		{"unpaired low surrogate in content", bytesReplace(created(), `"hello"`, `"\uDE00"`), domain.ErrInvalidField, `data.content: contains an unpaired UTF-16 surrogate (\uDE00)`},
		{"two high surrogates", bytesReplace(created(), `"hello"`, `"\ud83d\ud83d"`), domain.ErrInvalidField, `unpaired UTF-16 surrogate (\ud83d)`},
		{"authorName missing", created("authorName", absent), domain.ErrMissingField, "invalid event: data.authorName: missing"},
		{"authorName empty", created("authorName", ""), domain.ErrEmpty, "data.authorName: empty"},
		{"authorName 201", created("authorName", strings.Repeat("n", 201)), domain.ErrTooLong, "invalid event: data.authorName: 201 characters, at most 200"},
		{"authorAvatar 2049", created("authorAvatar", strings.Repeat("a", 2049)), domain.ErrTooLong, "invalid event: data.authorAvatar: 2049 characters, at most 2048"},
		{"authorAvatar a number", created("authorAvatar", 1), domain.ErrInvalidField, "data.authorAvatar: want a string, got number"},
		{"userName missing", encode(envelope(domain.TypeMemberJoined, with(memberJoined(), "userName", absent))), domain.ErrMissingField, "data.userName: missing"},
		{"userAvatar 2049", encode(envelope(domain.TypeMemberJoined, with(memberJoined(), "userAvatar", strings.Repeat("a", 2049)))), domain.ErrTooLong, "data.userAvatar: 2049 characters"},

		// Timestamps.
		{"createdAt missing", created("createdAt", absent), domain.ErrMissingField, "invalid event: data.createdAt: missing"},
		{"createdAt not RFC 3339", created("createdAt", "2026-11-27 08:00:00"), domain.ErrInvalidTime, `invalid event: data.createdAt "2026-11-27 08:00:00": not an RFC 3339 time`},
		{"createdAt without zone", created("createdAt", "2026-11-27T08:00:00"), domain.ErrInvalidTime, "data.createdAt"},
		{"createdAt a number", created("createdAt", 0), domain.ErrInvalidField, "data.createdAt: want a string, got number"},
		{"createdAt with a one-digit hour", created("createdAt", "2026-11-27T8:00:00Z"), domain.ErrInvalidTime, "not an RFC 3339 time"},
		{"createdAt with a lowercase t", created("createdAt", "2026-11-27t08:00:00Z"), domain.ErrInvalidTime, "not an RFC 3339 time"},
		{"createdAt with a comma", created("createdAt", "2026-11-27T08:00:00,5Z"), domain.ErrInvalidTime, "not an RFC 3339 time"},
		{"createdAt with an empty fraction", created("createdAt", "2026-11-27T08:00:00.Z"), domain.ErrInvalidTime, "not an RFC 3339 time"},
		{"createdAt with a short offset", created("createdAt", "2026-11-27T08:00:00+01"), domain.ErrInvalidTime, "not an RFC 3339 time"},
		{"createdAt on February 30", created("createdAt", "2026-02-30T08:00:00Z"), domain.ErrInvalidTime, "not an RFC 3339 time"},
		{"createdAt the zero time", created("createdAt", "0001-01-01T00:00:00Z"), domain.ErrInvalidTime, "out of range"},
		{"createdAt past 9999 in UTC", created("createdAt", "9999-12-31T23:30:00-01:00"), domain.ErrInvalidTime, "out of range"},
		{"createdAt before year 1 in UTC", created("createdAt", "0001-01-01T00:00:00+01:00"), domain.ErrInvalidTime, "out of range"},
		{"editedAt bad", encode(envelope(domain.TypeMessageEdited, with(messageEdited(), "editedAt", "2026-13-01T00:00:00Z"))), domain.ErrInvalidTime, `data.editedAt "2026-13-01T00:00:00Z"`},
		{"deletedAt missing", encode(envelope(domain.TypeMessageDeleted, with(messageDeleted(), "deletedAt", absent))), domain.ErrMissingField, "data.deletedAt: missing"},
		{"joinedAt bad", encode(envelope(domain.TypeMemberJoined, with(memberJoined(), "joinedAt", ""))), domain.ErrInvalidTime, `data.joinedAt ""`},
		{"leftAt null", encode(envelope(domain.TypeMemberLeft, with(memberLeft(), "leftAt", nil))), domain.ErrMissingField, "data.leftAt: missing"},

		// Notifications.
		{"userIds missing", notif(domain.TypeUserNotification, with(userNotification(), "userIds", absent)), domain.ErrMissingField, "invalid event: data.userIds: missing"},
		{"0 userIds", notif(domain.TypeUserNotification, with(userNotification(), "userIds", []any{})), domain.ErrEmpty, "invalid event: data.userIds: empty, at least 1 entry"},
		{"1001 userIds", notif(domain.TypeUserNotification, with(userNotification(), "userIds", ids(1001, "u"))), domain.ErrTooLong, "invalid event: data.userIds: 1001 entries, at most 1000"},
		{"1001 userIds, all the same", notif(domain.TypeUserNotification, with(userNotification(), "userIds", make1001Same())), domain.ErrTooLong, "data.userIds: 1001 entries"},
		{"userIds a string", notif(domain.TypeUserNotification, with(userNotification(), "userIds", "u-1")), domain.ErrInvalidField, "invalid event: data.userIds: want an array, got string"},
		{"userIds with a bad id", notif(domain.TypeUserNotification, with(userNotification(), "userIds", []any{"u-1", "u 2"})), domain.ErrInvalidID, `invalid event: data.userIds[1] "u 2": not a valid id (1..128 of [A-Za-z0-9_-=@,.;])`},
		{"userIds with a number", notif(domain.TypeUserNotification, with(userNotification(), "userIds", []any{1})), domain.ErrInvalidField, "invalid event: data.userIds[0]: want a string, got number"},
		{"userIds with null", notif(domain.TypeUserNotification, with(userNotification(), "userIds", []any{"u", nil})), domain.ErrInvalidID, "invalid event: data.userIds[1]: not a valid id (null)"},
		{"roomIds on a user notification do not count", notif(domain.TypeUserNotification, with(roomsNotification(), "userIds", absent)), domain.ErrMissingField, "data.userIds: missing"},
		{"roomIds 1001", notif(domain.TypeRoomsNotification, with(roomsNotification(), "roomIds", ids(1001, "r"))), domain.ErrTooLong, "data.roomIds: 1001 entries, at most 1000"},
		{"roomIds with a long id", notif(domain.TypeRoomsNotification, with(roomsNotification(), "roomIds", []any{strings.Repeat("r", 129)})), domain.ErrInvalidID, "data.roomIds[0]"},
		{"notification missing", notif(domain.TypeRoomsNotification, with(roomsNotification(), "notification", absent)), domain.ErrMissingField, "invalid event: data.notification: missing"},
		{"notification a string", notif(domain.TypeRoomsNotification, with(roomsNotification(), "notification", "hi")), domain.ErrInvalidField, "invalid event: data.notification: want a JSON object, got string"},
		{"notification id missing", withNotification("id", absent), domain.ErrMissingField, "invalid event: data.notification.id: missing"},
		{"notification id 129", withNotification("id", strings.Repeat("i", 129)), domain.ErrTooLong, "data.notification.id: 129 characters, at most 128"},
		{"notification type 65", withNotification("type", strings.Repeat("t", 65)), domain.ErrTooLong, "invalid event: data.notification.type: 65 characters, at most 64"},
		{"notification type empty", withNotification("type", ""), domain.ErrEmpty, "data.notification.type: empty"},
		{"notification title 201", withNotification("title", strings.Repeat("😀", 100)+"t"), domain.ErrTooLong, "data.notification.title: 201 characters, at most 200"},
		{"notification title missing", withNotification("title", absent), domain.ErrMissingField, "data.notification.title: missing"},
		{"notification body missing", withNotification("body", absent), domain.ErrMissingField, "data.notification.body: missing"},
		{"notification body 2001", withNotification("body", strings.Repeat("b", 2001)), domain.ErrTooLong, "data.notification.body: 2001 characters, at most 2000"},
		{"notification body a number", withNotification("body", 1), domain.ErrInvalidField, "data.notification.body: want a string, got number"},
		{"notification url 2049", withNotification("url", strings.Repeat("u", 2049)), domain.ErrTooLong, "invalid event: data.notification.url: 2049 characters, at most 2048"},
		{"notification url an object", withNotification("url", obj{}), domain.ErrInvalidField, "data.notification.url: want a string, got object"},
		{"NUL in notification title", withNotification("title", "\x00"), domain.ErrInvalidField, "data.notification.title: contains NUL"},

		// Socket ids.
		{"socketId not Pusher's format", created("socketId", "abc"), domain.ErrInvalidField, `invalid event: data.socketId "abc": not a Pusher socket id ("123.456", at most 64 characters)`},
		{"socketId a number", created("socketId", 1.2), domain.ErrInvalidField, "invalid event: data.socketId: want a string, got number"},
		{"socketId without digits after the dot", created("socketId", "12."), domain.ErrInvalidField, `data.socketId "12."`},
		{"socketId too long", created("socketId", strings.Repeat("1", 60)+".12345"), domain.ErrInvalidField, "data.socketId"},
		{"socketid extension bad", top("socketid", "1.2.3"), domain.ErrInvalidField, `invalid event: socketid "1.2.3": not a Pusher socket id ("123.456", at most 64 characters)`},

		// data as a whole: what Postgres jsonb cannot store.
		{"NUL in an unknown data field", created("note", "\x00"), domain.ErrInvalidField, `invalid event: data: contains NUL (\u0000)`},
		{"NUL in an unknown data key", created("n\x00", 1), domain.ErrInvalidField, `invalid event: data: contains NUL (\u0000)`},
		{"unpaired surrogate in an unknown data field", bytesReplace(created(), `"data":{`, `"data":{"x":["\udc00"],`), domain.ErrInvalidField, `invalid event: data: contains an unpaired UTF-16 surrogate (\udc00)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := domain.Decode(tt.value)
			if err == nil {
				t.Fatalf("Decode = %+v, want an error", env)
			}
			checkViolation(t, err)
			if !errors.Is(err, tt.kind) {
				t.Errorf("error %q does not match %v", err, tt.kind)
			}
			msg := err.Error()
			if strings.HasPrefix(tt.want, "invalid event: ") {
				if msg != tt.want {
					t.Errorf("Error() = %q\nwant      %q", msg, tt.want)
				}
			} else if !strings.Contains(msg, tt.want) {
				t.Errorf("Error() = %q, want it to contain %q", msg, tt.want)
			}
			var ve *domain.ValidationError
			if !errors.As(err, &ve) || ve.Kind != tt.kind {
				t.Errorf("error %#v is not a ValidationError of kind %v", err, tt.kind)
			}
			if !reflect.DeepEqual(env, domain.Envelope{}) {
				t.Errorf("Envelope = %+v with an error, want zero", env)
			}
		})
	}
}

// checkViolation asserts what every error of Decode is: a permanent contract
// violation of exactly one kind, one short line.
func checkViolation(t testing.TB, err error) {
	t.Helper()
	if !errors.Is(err, domain.ErrInvalidEvent) || !domain.IsPermanent(err) {
		t.Errorf("error %q does not match ErrInvalidEvent", err)
	}
	if errors.Is(err, domain.ErrUnknownMessage) {
		t.Errorf("error %q matches ErrUnknownMessage", err)
	}
	var matched []error
	for _, k := range kinds {
		if errors.Is(err, k) {
			matched = append(matched, k)
		}
	}
	if len(matched) != 1 {
		t.Errorf("error %q matches %d kinds %v, want exactly one", err, len(matched), matched)
	}
	msg := err.Error()
	if strings.ContainsAny(msg, "\n\r") || len(msg) > 400 || !strings.HasPrefix(msg, "invalid event: ") {
		t.Errorf("Error() = %q (%d bytes), want one line of at most 400 bytes starting with %q", msg, len(msg), "invalid event: ")
	}
}

func bytesReplace(b []byte, old, new string) []byte {
	s := string(b)
	if !strings.Contains(s, old) {
		panic("no " + old + " in " + s)
	}
	return []byte(strings.Replace(s, old, new, 1))
}

func make1001Same() []any {
	out := make([]any, 1001)
	for i := range out {
		out[i] = "u"
	}
	return out
}

func TestValidationError(t *testing.T) {
	err := error(&domain.ValidationError{Field: "data.roomId", Value: `"a b"`, Reason: "not a valid id", Kind: domain.ErrInvalidID})
	if got, want := err.Error(), `invalid event: data.roomId "a b": not a valid id`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	wrapped := fmt.Errorf("handle event e-1: %w", err)
	if !errors.Is(wrapped, domain.ErrInvalidEvent) || !errors.Is(wrapped, domain.ErrInvalidID) || errors.Is(wrapped, domain.ErrTooLong) {
		t.Errorf("wrapped %q matches the wrong sentinels", wrapped)
	}
	if got := (&domain.ValidationError{Reason: "not JSON: x", Kind: domain.ErrNotJSON}).Error(); got != "invalid event: not JSON: x" {
		t.Errorf("Error() without a field = %q", got)
	}
}

func TestIsPermanent(t *testing.T) {
	_, invalid := domain.Decode([]byte(`{}`))
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"a contract violation", invalid, true},
		{"a wrapped contract violation", fmt.Errorf("decode: %w", invalid), true},
		{"ErrInvalidEvent itself", domain.ErrInvalidEvent, true},
		{"unknown message", fmt.Errorf("edit m-1 in room-42: %w", domain.ErrUnknownMessage), true},
		{"refused by the store", fmt.Errorf("%w: value overflows numeric format (SQLSTATE 22003)", domain.ErrUnstorable), true},
		{"a database error", errors.New("connection refused"), false},
		{"a finer sentinel alone", domain.ErrContentTooLong, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := domain.IsPermanent(tt.err); got != tt.want {
				t.Errorf("IsPermanent(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
	if errors.Is(domain.ErrUnknownMessage, domain.ErrInvalidEvent) || errors.Is(domain.ErrUnstorable, domain.ErrInvalidEvent) {
		t.Error("ErrUnknownMessage or ErrUnstorable matches ErrInvalidEvent")
	}
	if domain.ErrUnknownMessage.Error() != "unknown message" {
		t.Errorf("ErrUnknownMessage = %q", domain.ErrUnknownMessage)
	}
}

func TestIsValidID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"room-42", true},
		{"A-z_0=9@a,b.c;d", true},
		{strings.Repeat("x", 128), true},
		{strings.Repeat("x", 129), false},
		{"", false},
		{"a b", false},
		{"a/b", false},
		{"a:b", false},
		{"é", false},
		{"a\x00", false},
	}
	for _, tt := range tests {
		if got := domain.IsValidID(tt.id); got != tt.want {
			t.Errorf("IsValidID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	values := map[string][]byte{
		"message created":   encode(envelope(domain.TypeMessageCreated, messageCreated())),
		"user notification": encode(envelope(domain.TypeUserNotification, userNotification())),
	}
	// As Go producers write it: json.Marshal escapes <, > and & as \u003c...
	escaped := messageCreated()
	escaped["content"] = "hello <3 & see you at 5 > 4"
	values["message created, HTML-escaped"] = encode(envelope(domain.TypeMessageCreated, escaped))
	for name, value := range values {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(value)))
			for b.Loop() {
				if _, err := domain.Decode(value); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestDecodeDoesNotKeepTheValue(t *testing.T) {
	value := encode(envelope(domain.TypeMessageCreated, messageCreated()))
	env, err := domain.Decode(value)
	if err != nil {
		t.Fatal(err)
	}
	data := string(env.Data)
	for i := range value {
		value[i] = ' '
	}
	if string(env.Data) != data || env.Event.(domain.MessageCreated).Content != "hello" {
		t.Errorf("the envelope changed with the value it was decoded from: %s", env.Data)
	}
}
