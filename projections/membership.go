package projections

import (
	"context"
	"fmt"

	"gorm.io/gorm"
)

// Membership reports whether userID is a member of roomID now (joined and
// not left since), with the row that holds the name and avatar the room
// knows them by. Channel authorization and history ask it on every request.
func Membership(ctx context.Context, db *gorm.DB, roomID, userID string) (RoomMember, bool, error) {
	var rows []RoomMember
	err := scanRaw(db.WithContext(ctx).Raw(`SELECT room_id, user_id, user_name, user_avatar, joined_at
		FROM room_members WHERE room_id = ? AND user_id = ?`, roomID, userID), &rows)
	if err != nil {
		return RoomMember{}, false, fmt.Errorf("read membership: %w", err)
	}
	if len(rows) == 0 {
		return RoomMember{}, false, nil
	}
	return rows[0], true, nil
}
