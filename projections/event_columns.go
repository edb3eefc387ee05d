package projections

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/roomcast/roomcast/domain"
)

// canonicalData returns the event's data as stored (keys sorted, numbers
// kept exactly, no HTML escaping) and its fingerprint.
func canonicalData(env domain.Envelope) (string, string, error) {
	data, err := domain.CanonicalJSON(env.Data)
	if err != nil {
		return "", "", fmt.Errorf("%w: data: %v", domain.ErrInvalidEvent, err)
	}
	h := sha256.New()
	h.Write([]byte(env.Type))
	h.Write([]byte{'\n'})
	h.Write(data)
	var sum [sha256.Size]byte
	return string(data), hex.EncodeToString(h.Sum(sum[:0])), nil
}

// occurredAt is an event's occurred_at: its CloudEvents time, else the Kafka
// timestamp, else now.
func occurredAt(env domain.Envelope, src Origin) time.Time {
	for _, t := range []time.Time{env.Time, src.Timestamp} {
		if !t.IsZero() {
			return t.UTC()
		}
	}
	return time.Now().UTC()
}

// eventRoom is the events.room_id of an event: its room, the first room of a
// rooms notification, "" for a user notification.
func eventRoom(e domain.Event) string {
	switch e := e.(type) {
	case domain.RoomEvent:
		return e.Room()
	case domain.RoomsNotification:
		return domain.PartitionKey(e)
	}
	return ""
}
