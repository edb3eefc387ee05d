package domain

import "time"

// EventType is the CloudEvents `type` of a chat event.
type EventType string

// The event types of the contract.
const (
	TypeMessageCreated    EventType = "chat.message.created"
	TypeMessageEdited     EventType = "chat.message.edited"
	TypeMessageDeleted    EventType = "chat.message.deleted"
	TypeMemberJoined      EventType = "chat.member.joined"
	TypeMemberLeft        EventType = "chat.member.left"
	TypeUserNotification  EventType = "chat.notification.user"
	TypeRoomsNotification EventType = "chat.notification.rooms"
)

// EventTypes lists every event type of the contract, in the contract's order.
var EventTypes = []EventType{
	TypeMessageCreated, TypeMessageEdited, TypeMessageDeleted,
	TypeMemberJoined, TypeMemberLeft,
	TypeUserNotification, TypeRoomsNotification,
}

// Event is the validated data of one chat event. Its concrete type is one of
// MessageCreated, MessageEdited, MessageDeleted, MemberJoined, MemberLeft,
// UserNotification or RoomsNotification (values, not pointers).
type Event interface {
	EventType() EventType
}

// RoomEvent is an Event that belongs to one room: it is ordered by the room's
// seq and delivered on the room's channel.
type RoomEvent interface {
	Event
	Room() string
}

// MessageCreated is chat.message.created.
type MessageCreated struct {
	RoomID       string
	MessageID    string
	AuthorID     string
	AuthorName   string
	AuthorAvatar *string // nil when null or missing
	Content      string
	CreatedAt    time.Time
}

// MessageEdited is chat.message.edited.
type MessageEdited struct {
	RoomID    string
	MessageID string
	Content   string
	EditedAt  time.Time
	EditorID  string
}

// MessageDeleted is chat.message.deleted.
type MessageDeleted struct {
	RoomID    string
	MessageID string
	DeletedAt time.Time
	DeletedBy string
}

// MemberJoined is chat.member.joined.
type MemberJoined struct {
	RoomID     string
	UserID     string
	UserName   string
	UserAvatar *string // nil when null or missing
	JoinedAt   time.Time
}

// MemberLeft is chat.member.left.
type MemberLeft struct {
	RoomID string
	UserID string
	LeftAt time.Time
}

// Notification is the notification object shared by user and rooms notifications.
type Notification struct {
	ID    string
	Type  string
	Title string
	Body  string
	URL   *string // nil when null or missing
}

// UserNotification is chat.notification.user. UserIDs holds no duplicates and
// keeps the order of their first appearance.
type UserNotification struct {
	UserIDs      []string
	Notification Notification
}

// RoomsNotification is chat.notification.rooms. RoomIDs holds no duplicates
// and keeps the order of their first appearance.
type RoomsNotification struct {
	RoomIDs      []string
	Notification Notification
}

func (MessageCreated) EventType() EventType    { return TypeMessageCreated }
func (MessageEdited) EventType() EventType     { return TypeMessageEdited }
func (MessageDeleted) EventType() EventType    { return TypeMessageDeleted }
func (MemberJoined) EventType() EventType      { return TypeMemberJoined }
func (MemberLeft) EventType() EventType        { return TypeMemberLeft }
func (UserNotification) EventType() EventType  { return TypeUserNotification }
func (RoomsNotification) EventType() EventType { return TypeRoomsNotification }

func (e MessageCreated) Room() string { return e.RoomID }
func (e MessageEdited) Room() string  { return e.RoomID }
func (e MessageDeleted) Room() string { return e.RoomID }
func (e MemberJoined) Room() string   { return e.RoomID }
func (e MemberLeft) Room() string     { return e.RoomID }

// PartitionKey is the Kafka key of an event: the room id for room events, the
// first of roomIds for rooms notifications and the first of userIds for user
// notifications.
func PartitionKey(e Event) string {
	switch e := e.(type) {
	case RoomEvent:
		return e.Room()
	case UserNotification:
		if len(e.UserIDs) > 0 {
			return e.UserIDs[0]
		}
	case RoomsNotification:
		if len(e.RoomIDs) > 0 {
			return e.RoomIDs[0]
		}
	}
	return ""
}

// Envelope is a validated CloudEvents 1.0 envelope (structured mode) and the
// chat event it carries.
type Envelope struct {
	ID      string
	Source  string
	Type    EventType
	Subject string
	// Time is the CloudEvents `time`; zero when the event has none.
	Time time.Time
	// SocketID is the sender's Pusher connection ("123.456"), empty when absent.
	SocketID string
	// Data is the `data` object exactly as received (unknown fields included).
	Data []byte
	// Event is the validated, typed data.
	Event Event
}
