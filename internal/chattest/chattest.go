// Package chattest builds contract events (CloudEvents JSON) for tests: one
// constructor per event type, each with fresh ids unless told otherwise.
package chattest

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/roomcast/roomcast/domain"
)

// Event is one CloudEvents JSON event under construction.
type Event struct {
	ID      string
	Type    domain.EventType
	Subject string
	Time    *time.Time
	Data    map[string]any
	Extra   map[string]any // extra top-level attributes (or overrides)
}

var clock atomic.Int64

// At is the base time of the builders' timestamps; each event is 1 ms later.
var At = time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)

func next() time.Time { return At.Add(time.Duration(clock.Add(1)) * time.Millisecond) }

func newEvent(typ domain.EventType, subject string, data map[string]any) *Event {
	t := next()
	return &Event{ID: uuid.NewString(), Type: typ, Subject: subject, Time: &t, Data: data}
}

// JSON is the event as a Kafka message value.
func (e *Event) JSON() []byte {
	m := map[string]any{
		"specversion": "1.0", "id": e.ID, "source": "/services/chattest", "type": e.Type,
		"subject": e.Subject, "datacontenttype": "application/json", "data": e.Data,
	}
	if e.Time != nil {
		m["time"] = domain.FormatTime(*e.Time)
	}
	for k, v := range e.Extra {
		if v == nil {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// Key is the event's Kafka key as the contract defines it.
func (e *Event) Key() string {
	env, err := domain.Decode(e.JSON())
	if err != nil {
		return e.Subject
	}
	return domain.PartitionKey(env.Event)
}

// Envelope decodes the event, failing the test if it breaks the contract.
func (e *Event) Envelope(t testing.TB) domain.Envelope {
	t.Helper()
	env, err := domain.Decode(e.JSON())
	if err != nil {
		t.Fatalf("chattest event %s does not decode: %v", e.ID, err)
	}
	return env
}

// WithID sets the event id.
func (e *Event) WithID(id string) *Event { e.ID = id; return e }

// With sets a data field (nil deletes it).
func (e *Event) With(field string, v any) *Event {
	if v == nil {
		delete(e.Data, field)
	} else {
		e.Data[field] = v
	}
	return e
}

// NoTime drops the CloudEvents time attribute.
func (e *Event) NoTime() *Event { e.Time = nil; return e }

// MessageCreated is chat.message.created by user "u-1" (Ada).
func MessageCreated(room, message, content string) *Event {
	t := next()
	return newEvent(domain.TypeMessageCreated, room, map[string]any{
		"roomId": room, "messageId": message, "authorId": "u-1", "authorName": "Ada",
		"authorAvatar": nil, "content": content, "createdAt": domain.FormatTime(t),
	})
}

// MessageEdited is chat.message.edited by user "u-1".
func MessageEdited(room, message, content string) *Event {
	return newEvent(domain.TypeMessageEdited, room, map[string]any{
		"roomId": room, "messageId": message, "content": content,
		"editedAt": domain.FormatTime(next()), "editorId": "u-1",
	})
}

// MessageDeleted is chat.message.deleted by user "u-2".
func MessageDeleted(room, message string) *Event {
	return newEvent(domain.TypeMessageDeleted, room, map[string]any{
		"roomId": room, "messageId": message, "deletedAt": domain.FormatTime(next()), "deletedBy": "u-2",
	})
}

// MemberJoined is chat.member.joined.
func MemberJoined(room, user string) *Event {
	return newEvent(domain.TypeMemberJoined, room, map[string]any{
		"roomId": room, "userId": user, "userName": "User " + user, "userAvatar": "https://example.com/" + user + ".png",
		"joinedAt": domain.FormatTime(next()),
	})
}

// MemberLeft is chat.member.left.
func MemberLeft(room, user string) *Event {
	return newEvent(domain.TypeMemberLeft, room, map[string]any{
		"roomId": room, "userId": user, "leftAt": domain.FormatTime(next()),
	})
}

// Notification is a notification object with a fresh id.
func Notification(title string) map[string]any {
	return map[string]any{"id": "n-" + uuid.NewString()[:8], "type": "mention", "title": title, "body": "body of " + title}
}

// UserNotification is chat.notification.user to users.
func UserNotification(users []string, title string) *Event {
	return newEvent(domain.TypeUserNotification, first(users), map[string]any{"userIds": users, "notification": Notification(title)})
}

// RoomsNotification is chat.notification.rooms to rooms.
func RoomsNotification(rooms []string, title string) *Event {
	return newEvent(domain.TypeRoomsNotification, first(rooms), map[string]any{"roomIds": rooms, "notification": Notification(title)})
}

// IDs returns n ids "prefix-1" ... "prefix-n".
func IDs(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i+1)
	}
	return out
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}
