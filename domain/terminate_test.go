package domain_test

import (
	"strings"
	"testing"

	"github.com/roomcast/roomcast/domain"
)

func TestTerminateDeliveryNamesTheUserAndNoRoom(t *testing.T) {
	d := domain.TerminateDelivery("ev-1", "u-7")
	if !domain.IsTermination(d) {
		t.Fatalf("IsTermination(%+v) = false", d)
	}
	if d.EventID != "ev-1" || d.RoomID != "" || d.Seq != 0 || d.SocketID != "" || d.Data != "{}" {
		t.Errorf("terminate delivery = %+v, want event ev-1, no room, no seq, no socket, data {}", d)
	}
	if len(d.Channels) != 1 || d.Channels[0] != "private-user-u-7" {
		t.Errorf("channels = %q, want the user's channel alone", d.Channels)
	}
	user, err := domain.TerminatedUser(d)
	if err != nil || user != "u-7" {
		t.Errorf("TerminatedUser = %q, %v; want u-7", user, err)
	}
}

func TestTerminateNameCannotBeAnEventName(t *testing.T) {
	// Pusher reserves the prefix for its own events: no event of the
	// contract, nor of any app, can carry it.
	if !strings.HasPrefix(domain.PusherTerminateConnections, "pusher:") {
		t.Fatalf("%q lacks Pusher's reserved prefix", domain.PusherTerminateConnections)
	}
	for _, name := range []string{domain.PusherNewMessage, domain.PusherMessageEdited, domain.PusherMessageDeleted,
		domain.PusherUserJoined, domain.PusherUserLeft, domain.PusherNotification} {
		d := domain.Delivery{Name: name, Channels: []string{"private-user-u-7"}, Data: "{}"}
		if domain.IsTermination(d) {
			t.Errorf("event %q is taken for a termination", name)
		}
	}
}

func TestTerminatedUserRefusesRowsThatNameNoUser(t *testing.T) {
	for name, channels := range map[string][]string{
		"no channel":             nil,
		"two channels":           {"private-user-a", "private-user-b"},
		"a room channel":         {"private-room-r"},
		"an empty user id":       {"private-user-"},
		"a character not in ids": {"private-user-a/b"},
	} {
		d := domain.Delivery{ID: 9, Name: domain.PusherTerminateConnections, Channels: channels, Data: "{}"}
		if user, err := domain.TerminatedUser(d); err == nil {
			t.Errorf("%s: TerminatedUser = %q, want an error", name, user)
		}
	}
}
