package domain

import (
	"fmt"
	"strings"
)

// PusherTerminateConnections is the name of an outbox delivery that is not
// an event: a call to Pusher's "terminate user connections"
// (POST /apps/{app_id}/users/{user_id}/terminate_connections), owed when a
// member leaves a room and PUSHER_TERMINATE_ON_LEAVE is on. The "pusher:"
// prefix is Pusher's own, which no app event may use, so the name can never
// be one of the contract's event names.
const PusherTerminateConnections = "pusher:terminate_connections"

// TerminateBody is the body of a terminate call, and the Data of its
// delivery: Pusher takes an empty JSON object.
const TerminateBody = "{}"

// TerminateDelivery is the delivery that asks Pusher to close the
// connections of userID, owed by the event eventID (a member.left). Its one
// channel is the user's channel, which names the user; it has no room and no
// seq: it is not one of the room's events, and it cuts the user's
// connections whatever rooms they subscribe to.
func TerminateDelivery(eventID, userID string) Delivery {
	return Delivery{
		EventID:  eventID,
		Channels: []string{UserChannel(userID)},
		Name:     PusherTerminateConnections,
		Data:     TerminateBody,
	}
}

// IsTermination reports whether d is a terminate delivery (see
// TerminateDelivery) rather than an event.
func IsTermination(d Delivery) bool { return d.Name == PusherTerminateConnections }

// TerminatedUser returns the user whose connections the terminate delivery d
// closes. It fails when d does not name exactly one user channel of a valid
// id (a row not written by TerminateDelivery).
func TerminatedUser(d Delivery) (string, error) {
	if len(d.Channels) != 1 {
		return "", fmt.Errorf("terminate delivery %d: %d channels, want the user's channel alone", d.ID, len(d.Channels))
	}
	userID, ok := strings.CutPrefix(d.Channels[0], UserChannelPrefix)
	if !ok || !IsValidID(userID) {
		return "", fmt.Errorf("terminate delivery %d: %q is not a user channel (%s{userId})", d.ID, d.Channels[0], UserChannelPrefix)
	}
	return userID, nil
}
