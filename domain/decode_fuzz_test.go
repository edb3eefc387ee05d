package domain_test

import (
	"bytes"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/roomcast/roomcast/domain"
)

func FuzzDecode(f *testing.F) {
	for _, v := range []obj{
		envelope(domain.TypeMessageCreated, messageCreated()),
		envelope(domain.TypeMessageCreated, with(messageCreated(), "authorAvatar", "https://a/b.png", "socketId", "1.2")),
		envelope(domain.TypeMessageEdited, messageEdited()),
		envelope(domain.TypeMessageDeleted, messageDeleted()),
		with(envelope(domain.TypeMemberJoined, memberJoined()), "socketid", "123.456"),
		envelope(domain.TypeMemberLeft, memberLeft()),
		envelope(domain.TypeUserNotification, userNotification()),
		envelope(domain.TypeRoomsNotification, roomsNotification()),
		envelope(domain.TypeMessageCreated, with(messageCreated(), "content", strings.Repeat("😀", 2001))),
		envelope(domain.TypeMessageCreated, with(messageCreated(), "roomId", "a b")),
		with(envelope(domain.TypeMessageCreated, messageCreated()), "specversion", "0.3"),
		envelope("chat.foo", obj{}),
	} {
		f.Add(encode(v))
	}
	for _, s := range []string{
		``, `null`, `[]`, `{}`, `{"data":{}}`, `{"a" 1}`, "{\"x\":\"\xff\"}",
		`{"specversion":"1.0","id":"e","source":"s","type":"chat.member.left","data":{"roomId":"r","userId":"u","leftAt":"2026-11-27T08:00:00Z","x":"\u0000","y":"\ud83d\ude00"}}`,
		`{"specversion":"1.0","id":"e","source":"s","type":"chat.member.left","data":{"roomid":"r","room\u0049d":"r","userId":"u","leftAt":"2026-11-27T08:00:00+14:00","userId":"v"}}`,
		`{"specversion":"1.0","id":"e","source":"s","type":"chat.notification.rooms","data":{"roomIds":["a","b","a",null],"notification":{"id":"\"","type":"t","title":"t","body":"","url":null}}}`,
		`{"specversion":"1.0","id":"e","source":"s","type":"chat.message.deleted","data_base64":"e30=","data":[[[{"a":"]"}]]]}`,
		// What Postgres would refuse (limits.go): numbers around numeric's
		// bounds, deep data, control characters in the envelope.
		`{"specversion":"1.0","id":"e","source":"s","type":"chat.member.left","data":{"roomId":"r","userId":"u","leftAt":"2026-11-27T08:00:00Z","n":[1e131071,-0.5e-16382,0e-16383,1.0E+2]}}`,
		`{"specversion":"1.0","id":"e","source":"s","type":"chat.member.left","data":{"roomId":"r","userId":"u","leftAt":"2026-11-27T08:00:00Z","n":{"x":[1e131072]}}}`,
		`{"specversion":"1.0","id":"e","source":"s","type":"chat.member.left","data":{"roomId":"r","userId":"u","leftAt":"2026-11-27T08:00:00Z","n":0e-16384}}`,
		`{"specversion":"1.0","id":"e","source":"s","type":"chat.member.left","data":{"roomId":"r","userId":"u","leftAt":"2026-11-27T08:00:00Z","n":-12.5e1073741823}}`,
		`{"specversion":"1.0","id":"e\u0085","source":"s\n","subject":"\u007f","type":"chat.member.left","data":{"roomId":"r","userId":"u","leftAt":"2026-11-27T08:00:00Z"}}`,
		`{"specversion":"1.0","id":"e","source":"s","type":"chat.member.left","data":{"roomId":"r","userId":"u","leftAt":"2026-11-27T08:00:00Z","d":` + strings.Repeat("[", 511) + strings.Repeat("]", 511) + `}}`,
		`{"specversion":"1.0","id":"e","source":"s","type":"chat.member.left","data":{"roomId":"r","userId":"u","leftAt":"2026-11-27T08:00:00Z","d":` + strings.Repeat(`{"":`, 512) + "1" + strings.Repeat("}", 512) + `}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		env, err := domain.Decode(value)
		checkStorable(t, value, env, err)
		if err != nil {
			checkViolation(t, err)
			if !reflect0(env) {
				t.Errorf("Envelope = %+v with an error", env)
			}
			return
		}
		checkEnvelope(t, value, env)
	})
}

func reflect0(env domain.Envelope) bool {
	return env.ID == "" && env.Source == "" && env.Type == "" && env.Subject == "" &&
		env.Time.IsZero() && env.SocketID == "" && env.Data == nil && env.Event == nil
}

var socketIDPattern = regexp.MustCompile(`^\d+\.\d+$`)

// checkEnvelope asserts what holds of every event Decode accepts, and checks
// its reading against encoding/json's.
func checkEnvelope(t *testing.T, value []byte, env domain.Envelope) {
	t.Helper()
	if !utf8.Valid(value) || !json.Valid(value) {
		t.Fatalf("accepted a value that is not valid UTF-8 JSON: %q", value)
	}
	if env.Event == nil || env.Event.EventType() != env.Type {
		t.Fatalf("Event %#v does not match type %q", env.Event, env.Type)
	}
	key := domain.PartitionKey(env.Event)
	if !domain.IsValidID(key) {
		t.Errorf("PartitionKey = %q", key)
	}

	var top map[string]json.RawMessage
	if err := json.Unmarshal(value, &top); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	if !bytes.Equal(env.Data, top["data"]) {
		t.Errorf("Data = %s, encoding/json reads %s", env.Data, top["data"])
	}
	var data map[string]json.RawMessage
	if err := json.Unmarshal(env.Data, &data); err != nil || data == nil {
		t.Fatalf("Data %s is not a JSON object: %v", env.Data, err)
	}
	want := func(m map[string]json.RawMessage, key, got string) {
		t.Helper()
		var s string
		if raw := m[key]; raw != nil && string(raw) != "null" {
			if err := json.Unmarshal(raw, &s); err != nil {
				t.Errorf("%s = %s is not a string, but Decode read %q", key, raw, got)
			}
		}
		if s != got {
			t.Errorf("%s = %q, encoding/json reads %q", key, got, s)
		}
	}
	wantText := func(m map[string]json.RawMessage, key, got string, min, max int) {
		t.Helper()
		want(m, key, got)
		if n := len(utf16.Encode([]rune(got))); n < min || n > max {
			t.Errorf("%s has %d UTF-16 units, want %d..%d", key, n, min, max)
		}
		if strings.ContainsRune(got, 0) {
			t.Errorf("%s = %q holds NUL", key, got)
		}
		// U+FFFD only where it was sent, not for an unpaired surrogate.
		sentFFFD := bytes.ContainsRune(m[key], utf8.RuneError) || bytes.Contains(bytes.ToLower(m[key]), []byte(`\ufffd`))
		if strings.ContainsRune(got, utf8.RuneError) && !sentFFFD {
			t.Errorf("%s = %q holds a replaced character", key, got)
		}
	}
	wantOptText := func(m map[string]json.RawMessage, key string, got *string, max int) {
		t.Helper()
		if got == nil {
			want(m, key, "")
			return
		}
		wantText(m, key, *got, 0, max)
	}
	wantID := func(m map[string]json.RawMessage, key, got string) {
		t.Helper()
		want(m, key, got)
		if !domain.IsValidID(got) {
			t.Errorf("%s = %q is not a valid id", key, got)
		}
	}
	wantTime := func(m map[string]json.RawMessage, key string, got time.Time) {
		t.Helper()
		var s string
		_ = json.Unmarshal(m[key], &s)
		if w, err := time.Parse(time.RFC3339Nano, s); err != nil || !w.Equal(got) || got.IsZero() {
			t.Errorf("%s = %v, from %s", key, got, m[key])
		}
	}
	wantIDs := func(m map[string]json.RawMessage, key string, got []string) {
		t.Helper()
		var sent []string
		if err := json.Unmarshal(m[key], &sent); err != nil || len(sent) < 1 || len(sent) > domain.MaxRecipients {
			t.Errorf("%s = %s, want 1..1000 ids (%v)", key, m[key], err)
		}
		var dedup []string
		for _, id := range sent {
			if !slices.Contains(dedup, id) {
				dedup = append(dedup, id)
			}
		}
		if !slices.Equal(got, dedup) {
			t.Errorf("%s = %q, want %q", key, got, dedup)
		}
		for _, id := range got {
			if !domain.IsValidID(id) {
				t.Errorf("%s holds %q", key, id)
			}
		}
	}
	wantNotification := func(m map[string]json.RawMessage, n domain.Notification) {
		t.Helper()
		var nm map[string]json.RawMessage
		if err := json.Unmarshal(m["notification"], &nm); err != nil || nm == nil {
			t.Fatalf("notification = %s", m["notification"])
		}
		wantText(nm, "id", n.ID, 1, domain.MaxNotificationIDLength)
		wantText(nm, "type", n.Type, 1, domain.MaxNotificationTypeLength)
		wantText(nm, "title", n.Title, 1, domain.MaxNotificationTitle)
		wantText(nm, "body", n.Body, 0, domain.MaxNotificationBody)
		wantOptText(nm, "url", n.URL, domain.MaxNotificationURL)
	}

	want(top, "specversion", "1.0")
	want(top, "type", string(env.Type))
	wantText(top, "id", env.ID, 1, domain.MaxEventIDLength)
	wantText(top, "source", env.Source, 1, len(value))
	wantText(top, "subject", env.Subject, 0, len(value))
	if raw := top["time"]; raw != nil && string(raw) != "null" {
		wantTime(top, "time", env.Time)
	} else if !env.Time.IsZero() {
		t.Errorf("Time = %v without a time", env.Time)
	}

	switch e := env.Event.(type) {
	case domain.MessageCreated:
		wantID(data, "roomId", e.RoomID)
		wantID(data, "messageId", e.MessageID)
		wantID(data, "authorId", e.AuthorID)
		wantText(data, "authorName", e.AuthorName, 1, domain.MaxNameLength)
		wantOptText(data, "authorAvatar", e.AuthorAvatar, domain.MaxAvatarLength)
		wantText(data, "content", e.Content, 1, domain.MaxContentLength)
		wantTime(data, "createdAt", e.CreatedAt)
	case domain.MessageEdited:
		wantID(data, "roomId", e.RoomID)
		wantID(data, "messageId", e.MessageID)
		wantText(data, "content", e.Content, 1, domain.MaxContentLength)
		wantTime(data, "editedAt", e.EditedAt)
		wantID(data, "editorId", e.EditorID)
	case domain.MessageDeleted:
		wantID(data, "roomId", e.RoomID)
		wantID(data, "messageId", e.MessageID)
		wantTime(data, "deletedAt", e.DeletedAt)
		wantID(data, "deletedBy", e.DeletedBy)
	case domain.MemberJoined:
		wantID(data, "roomId", e.RoomID)
		wantID(data, "userId", e.UserID)
		wantText(data, "userName", e.UserName, 1, domain.MaxNameLength)
		wantOptText(data, "userAvatar", e.UserAvatar, domain.MaxAvatarLength)
		wantTime(data, "joinedAt", e.JoinedAt)
	case domain.MemberLeft:
		wantID(data, "roomId", e.RoomID)
		wantID(data, "userId", e.UserID)
		wantTime(data, "leftAt", e.LeftAt)
	case domain.UserNotification:
		wantIDs(data, "userIds", e.UserIDs)
		wantNotification(data, e.Notification)
	case domain.RoomsNotification:
		wantIDs(data, "roomIds", e.RoomIDs)
		wantNotification(data, e.Notification)
	default:
		t.Fatalf("Event is a %T", e)
	}

	if _, room := env.Event.(domain.RoomEvent); env.SocketID != "" && (!room || !socketIDPattern.MatchString(env.SocketID)) {
		t.Errorf("SocketID = %q on %s", env.SocketID, env.Type)
	}
	if bytes.Contains(env.Data, []byte(`\u0000`)) && !bytes.Contains(env.Data, []byte(`\\u0000`)) {
		t.Errorf("Data holds \\u0000: %s", env.Data)
	}
}
