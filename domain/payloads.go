package domain

import (
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/roomcast/roomcast/domain/internal/wire"
)

// FormatTime writes t the way roomcast emits every timestamp: RFC 3339 in UTC
// with milliseconds, as JavaScript's toISOString (2026-11-27T08:00:00.000Z).
func FormatTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// Delivery is one Pusher trigger the contract owes for an event: one event
// name and data for one or more channels (at most MaxPusherChannelsPerCall).
// Deliveries of a room event carry the room and its seq; notifications carry
// neither and are not ordered.
type Delivery struct {
	// ID is the outbox row id (0 before it is stored).
	ID       int64
	EventID  string
	RoomID   string // "" for notifications
	Seq      int64  // 0 for notifications
	Channels []string
	Name     string
	Data     string // the JSON payload, exactly as sent
	SocketID string // "" when the sender's connection is not to be excluded
	// Truncated says the text field was shortened to fit Pusher's 10 KB limit;
	// the payload then carries "truncated": true and the full text stays in Postgres.
	Truncated bool
	// TooLarge says the payload cannot fit 10 KB even with its text emptied;
	// such a delivery is parked, never sent, and counted.
	TooLarge bool
	Attempts int
	// CreatedAt is when the delivery was committed to the outbox.
	CreatedAt time.Time
}

// The payloads sent to Pusher. Field names, order and presence are the
// contract. Redacted marks a message payload whose text a delete emptied
// (RedactDelivery); it is never set together with Truncated.
type (
	newMessagePayload struct {
		ID           string  `json:"id"`
		Content      string  `json:"content"`
		AuthorID     string  `json:"authorId"`
		AuthorName   string  `json:"authorName"`
		AuthorAvatar *string `json:"authorAvatar"`
		CreatedAt    string  `json:"createdAt"`
		RoomID       string  `json:"roomId"`
		Seq          int64   `json:"seq"`
		Truncated    bool    `json:"truncated,omitempty"`
		Redacted     bool    `json:"redacted,omitempty"`
	}
	messageEditedPayload struct {
		ID        string `json:"id"`
		Content   string `json:"content"`
		EditedAt  string `json:"editedAt"`
		RoomID    string `json:"roomId"`
		Seq       int64  `json:"seq"`
		Truncated bool   `json:"truncated,omitempty"`
		Redacted  bool   `json:"redacted,omitempty"`
	}
	messageDeletedPayload struct {
		ID        string `json:"id"`
		DeletedAt string `json:"deletedAt"`
		RoomID    string `json:"roomId"`
		Seq       int64  `json:"seq"`
	}
	userJoinedPayload struct {
		UserID     string  `json:"userId"`
		UserName   string  `json:"userName"`
		UserAvatar *string `json:"userAvatar"`
		JoinedAt   string  `json:"joinedAt"`
		RoomID     string  `json:"roomId"`
		Seq        int64   `json:"seq"`
	}
	userLeftPayload struct {
		UserID string `json:"userId"`
		LeftAt string `json:"leftAt"`
		RoomID string `json:"roomId"`
		Seq    int64  `json:"seq"`
	}
	notificationPayload struct {
		ID        string  `json:"id"`
		Type      string  `json:"type"`
		Title     string  `json:"title"`
		Body      string  `json:"body"`
		URL       *string `json:"url,omitempty"`
		Truncated bool    `json:"truncated,omitempty"`
	}
)

// RoomDelivery builds the delivery a room event owes once it has changed
// something and been given the room's seq. A message event with empty
// content can only be a stored one whose text a delete redacted (a valid
// event has 1..4000 characters), so its payload is marked redacted, as
// RedactDelivery marks a delivery rendered before the delete.
func RoomDelivery(env Envelope, seq int64) (Delivery, error) {
	e, ok := env.Event.(RoomEvent)
	if !ok {
		return Delivery{}, fmt.Errorf("room delivery of %s: not a room event", env.Type)
	}
	d := Delivery{
		EventID:  env.ID,
		RoomID:   e.Room(),
		Seq:      seq,
		Channels: []string{RoomChannel(e.Room())},
		SocketID: env.SocketID,
	}
	var err error
	switch e := e.(type) {
	case MessageCreated:
		d.Name = PusherNewMessage
		redacted := e.Content == ""
		err = fitText(&d, e.Content, func(text string, truncated bool) any {
			return newMessagePayload{ID: e.MessageID, Content: text, AuthorID: e.AuthorID,
				AuthorName: e.AuthorName, AuthorAvatar: e.AuthorAvatar, CreatedAt: FormatTime(e.CreatedAt),
				RoomID: e.RoomID, Seq: seq, Truncated: truncated, Redacted: redacted}
		})
	case MessageEdited:
		d.Name = PusherMessageEdited
		redacted := e.Content == ""
		err = fitText(&d, e.Content, func(text string, truncated bool) any {
			return messageEditedPayload{ID: e.MessageID, Content: text, EditedAt: FormatTime(e.EditedAt),
				RoomID: e.RoomID, Seq: seq, Truncated: truncated, Redacted: redacted}
		})
	case MessageDeleted:
		d.Name = PusherMessageDeleted
		err = fitFixed(&d, messageDeletedPayload{ID: e.MessageID, DeletedAt: FormatTime(e.DeletedAt), RoomID: e.RoomID, Seq: seq})
	case MemberJoined:
		d.Name = PusherUserJoined
		err = fitFixed(&d, userJoinedPayload{UserID: e.UserID, UserName: e.UserName, UserAvatar: e.UserAvatar,
			JoinedAt: FormatTime(e.JoinedAt), RoomID: e.RoomID, Seq: seq})
	case MemberLeft:
		d.Name = PusherUserLeft
		err = fitFixed(&d, userLeftPayload{UserID: e.UserID, LeftAt: FormatTime(e.LeftAt), RoomID: e.RoomID, Seq: seq})
	default:
		return Delivery{}, fmt.Errorf("room delivery of %T: unknown room event", e)
	}
	if err != nil {
		return Delivery{}, fmt.Errorf("room delivery of %s %s: %w", env.Type, env.ID, err)
	}
	return d, nil
}

// NotificationDeliveries builds the deliveries a notification owes: one
// payload for all its channels, split into triggers of at most
// MaxPusherChannelsPerCall channels.
func NotificationDeliveries(env Envelope) ([]Delivery, error) {
	var channels []string
	var n Notification
	switch e := env.Event.(type) {
	case UserNotification:
		n = e.Notification
		for _, id := range e.UserIDs {
			channels = append(channels, UserChannel(id))
		}
	case RoomsNotification:
		n = e.Notification
		for _, id := range e.RoomIDs {
			channels = append(channels, RoomChannel(id))
		}
	default:
		return nil, fmt.Errorf("notification deliveries of %s: not a notification", env.Type)
	}
	proto := Delivery{EventID: env.ID, Name: PusherNotification}
	err := fitText(&proto, n.Body, func(text string, truncated bool) any {
		return notificationPayload{ID: n.ID, Type: n.Type, Title: n.Title, Body: text, URL: n.URL, Truncated: truncated}
	})
	if err != nil {
		return nil, fmt.Errorf("notification deliveries of %s: %w", env.ID, err)
	}
	var out []Delivery
	for start := 0; start < len(channels); start += MaxPusherChannelsPerCall {
		d := proto
		d.Channels = channels[start:min(start+MaxPusherChannelsPerCall, len(channels))]
		out = append(out, d)
	}
	return out, nil
}

// MarshalPayload writes v as JSON without HTML escaping and without a trailing
// newline, as roomcast sends every payload to Pusher.
func MarshalPayload(v any) ([]byte, error) { return wire.Marshal(v) }

func fitFixed(d *Delivery, v any) error {
	data, err := MarshalPayload(v)
	if err != nil {
		return err
	}
	d.Data = string(data)
	d.TooLarge = len(data) > MaxPusherDataBytes
	return nil
}

// fitText sets d.Data to the payload with the full text when it fits Pusher's
// limit; otherwise with the longest prefix of the text (whole characters) that
// fits, marked truncated. When even an empty text does not fit, d.TooLarge is set.
func fitText(d *Delivery, text string, build func(text string, truncated bool) any) error {
	data, err := MarshalPayload(build(text, false))
	if err != nil {
		return err
	}
	if len(data) <= MaxPusherDataBytes {
		d.Data = string(data)
		return nil
	}
	runes := []rune(text)
	lo, hi := 0, len(runes) // the longest fitting prefix has lo <= n < hi runes
	best, err := MarshalPayload(build("", true))
	if err != nil {
		return err
	}
	if len(best) > MaxPusherDataBytes {
		d.Data, d.TooLarge, d.Truncated = string(best), true, true
		return nil
	}
	for lo+1 < hi {
		mid := (lo + hi) / 2
		candidate, err := MarshalPayload(build(string(runes[:mid]), true))
		if err != nil {
			return err
		}
		if len(candidate) <= MaxPusherDataBytes {
			lo, best = mid, candidate
		} else {
			hi = mid
		}
	}
	d.Data, d.Truncated = string(best), true
	if !utf8.ValidString(d.Data) {
		return fmt.Errorf("truncated payload is not valid UTF-8")
	}
	return nil
}
