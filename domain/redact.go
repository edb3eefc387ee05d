package domain

import (
	"encoding/json"
	"fmt"
)

// RedactDelivery returns d as a delete of its message leaves it: the text
// emptied, "redacted": true in place of any "truncated", in the same field
// order and formatting as every other payload (RoomDelivery's). Only
// new-message and message-edited deliveries carry text; any other is
// returned unchanged.
func RedactDelivery(d Delivery) (Delivery, error) {
	var v any
	switch d.Name {
	case PusherNewMessage:
		var p newMessagePayload
		if err := json.Unmarshal([]byte(d.Data), &p); err != nil {
			return Delivery{}, fmt.Errorf("redact %s delivery of %s: %w", d.Name, d.EventID, err)
		}
		p.Content, p.Truncated, p.Redacted = "", false, true
		v = p
	case PusherMessageEdited:
		var p messageEditedPayload
		if err := json.Unmarshal([]byte(d.Data), &p); err != nil {
			return Delivery{}, fmt.Errorf("redact %s delivery of %s: %w", d.Name, d.EventID, err)
		}
		p.Content, p.Truncated, p.Redacted = "", false, true
		v = p
	default:
		return d, nil
	}
	if err := fitFixed(&d, v); err != nil {
		return Delivery{}, fmt.Errorf("redact %s delivery of %s: %w", d.Name, d.EventID, err)
	}
	d.Truncated = false
	return d, nil
}
