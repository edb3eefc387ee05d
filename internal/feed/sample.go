// Package feed writes chat events to roomcast's topic by hand: a sample
// conversation, the Kafka key each event line goes under, and a producer
// that sends the lines in batches.
package feed

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/roomcast/roomcast/domain"
)

// Sample builds a conversation as CloudEvents JSON lines, with fresh ids on
// every call: two members join each room, talk, one message is edited and
// one deleted, a member leaves, and notifications go to users and to every
// room.
func Sample(rooms, messages int, now time.Time) []string {
	run := uuid.NewString()[:8]
	var out []string
	at := now
	emit := func(typ domain.EventType, subject string, data map[string]any) {
		at = at.Add(time.Millisecond)
		b, _ := json.Marshal(map[string]any{
			"specversion": "1.0", "id": uuid.NewString(), "source": "/services/roomcast-sample",
			"type": typ, "time": domain.FormatTime(at), "subject": subject,
			"datacontenttype": "application/json", "data": data,
		})
		out = append(out, string(b))
	}
	var roomIDs []string
	users := []struct{ id, name string }{{"u-ada-" + run, "Ada"}, {"u-grace-" + run, "Grace"}}
	for r := 1; r <= rooms; r++ {
		room := fmt.Sprintf("room-%s-%d", run, r)
		roomIDs = append(roomIDs, room)
		for _, u := range users {
			emit(domain.TypeMemberJoined, room, map[string]any{"roomId": room, "userId": u.id, "userName": u.name,
				"userAvatar": nil, "joinedAt": domain.FormatTime(at)})
		}
		var msgIDs []string
		for m := 1; m <= messages; m++ {
			u := users[m%2]
			id := fmt.Sprintf("m-%s-%d-%d", run, r, m)
			msgIDs = append(msgIDs, id)
			emit(domain.TypeMessageCreated, room, map[string]any{"roomId": room, "messageId": id, "authorId": u.id,
				"authorName": u.name, "authorAvatar": nil, "content": fmt.Sprintf("hello %d from %s <3", m, u.name),
				"createdAt": domain.FormatTime(at)})
		}
		emit(domain.TypeMessageEdited, room, map[string]any{"roomId": room, "messageId": msgIDs[0],
			"content": "hello, edited", "editedAt": domain.FormatTime(at), "editorId": users[1].id})
		if len(msgIDs) > 1 {
			emit(domain.TypeMessageDeleted, room, map[string]any{"roomId": room, "messageId": msgIDs[1],
				"deletedAt": domain.FormatTime(at), "deletedBy": users[0].id})
		}
		emit(domain.TypeMemberLeft, room, map[string]any{"roomId": room, "userId": users[1].id, "leftAt": domain.FormatTime(at)})
	}
	emit(domain.TypeUserNotification, users[0].id, map[string]any{"userIds": []string{users[0].id, users[1].id},
		"notification": map[string]any{"id": "n-" + run, "type": "mention", "title": "You were mentioned", "body": "Ada mentioned you"}})
	emit(domain.TypeRoomsNotification, roomIDs[0], map[string]any{"roomIds": roomIDs,
		"notification": map[string]any{"id": "n-rooms-" + run, "type": "announcement", "title": "Maintenance tonight",
			"body": "Chat will be read-only from 22:00 UTC", "url": "https://status.example.com"}})
	return out
}
