package projections

import (
	"context"
	"fmt"
	"math"

	"gorm.io/gorm"
)

// messageColumns are the columns of messages the read side answers with.
const messageColumns = `id, room_id, seq, author_id, author_name, author_avatar, content, created_at, edited_at, edited_by, deleted_at, deleted_by`

// RoomMessages returns up to limit of roomID's messages with a seq below
// beforeSeq (0: the newest), newest first, and whether older ones follow.
// A deleted message is there as the row a delete leaves: content empty,
// DeletedAt set. It reads through the index messages_room_seq.
func RoomMessages(ctx context.Context, db *gorm.DB, roomID string, beforeSeq int64, limit int) ([]Message, bool, error) {
	if limit <= 0 {
		return nil, false, fmt.Errorf("read the messages of room %q: limit %d, want a positive one", roomID, limit)
	}
	if beforeSeq <= 0 {
		beforeSeq = math.MaxInt64
	}
	var ms []Message
	err := scanRaw(db.WithContext(ctx).Raw(`SELECT `+messageColumns+` FROM messages
		WHERE room_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?`, roomID, beforeSeq, limit+1), &ms)
	if err != nil {
		return nil, false, fmt.Errorf("read the messages of room %q: %w", roomID, err)
	}
	if len(ms) > limit {
		return ms[:limit], true, nil
	}
	return ms, false, nil
}

// RoomMessage returns the message messageID of roomID, with its whole text
// (which a payload may carry truncated), and whether the room has it.
func RoomMessage(ctx context.Context, db *gorm.DB, roomID, messageID string) (Message, bool, error) {
	var ms []Message
	err := scanRaw(db.WithContext(ctx).Raw(`SELECT `+messageColumns+` FROM messages
		WHERE id = ? AND room_id = ?`, messageID, roomID), &ms)
	if err != nil {
		return Message{}, false, fmt.Errorf("read message %q of room %q: %w", messageID, roomID, err)
	}
	if len(ms) == 0 {
		return Message{}, false, nil
	}
	return ms[0], true, nil
}
