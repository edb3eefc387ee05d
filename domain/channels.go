package domain

// Pusher channel prefixes of the contract.
const (
	RoomChannelPrefix = "private-room-"
	UserChannelPrefix = "private-user-"
)

// Pusher event names of the contract.
const (
	PusherNewMessage     = "new-message"
	PusherMessageEdited  = "message-edited"
	PusherMessageDeleted = "message-deleted"
	PusherUserJoined     = "user-joined"
	PusherUserLeft       = "user-left"
	PusherNotification   = "notification"
)

// Pusher's limits (docs/contract.md, "Pusher: channels, events, payloads").
const (
	MaxPusherDataBytes       = 10240 // data of one event
	MaxPusherChannelsPerCall = 100   // channels of one trigger
	MaxPusherBatchEvents     = 10    // events of one batch call
	MaxPusherChannelName     = 164   // characters of a channel name
)

// RoomChannel is the Pusher channel of a room: private-room-{roomId}.
func RoomChannel(roomID string) string { return RoomChannelPrefix + roomID }

// UserChannel is the Pusher channel of a user: private-user-{userId}.
func UserChannel(userID string) string { return UserChannelPrefix + userID }
