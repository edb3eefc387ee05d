package api

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"gorm.io/gorm"
)

// latestMemberInfo is the name and avatar a user has in the room they
// joined last ("avatar": "" for none, as in presence channels): the
// user_info of a Pusher signin, within the same size limit. ok is false
// for a user in no room.
func latestMemberInfo(ctx context.Context, db *gorm.DB, userID string) (info map[string]string, ok bool, err error) {
	var name string
	var avatar sql.NullString
	err = db.WithContext(ctx).Raw(`SELECT user_name, user_avatar FROM room_members
		WHERE user_id = ? ORDER BY joined_at DESC, room_id LIMIT 1`, userID).Row().Scan(&name, &avatar)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("read membership: %w", err)
	}
	return fitUserInfo(userID, name, avatar.String), true, nil
}
