package projections

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/roomcast/roomcast/domain"
)

// UserNotification is one notification a user was sent on their channel.
type UserNotification struct {
	// Position orders a user's notifications (events.position): the cursor.
	Position   int64
	EventID    string
	OccurredAt time.Time
	// Data is the payload as Pusher was sent it (its body cut to fit 10 KB
	// when Truncated).
	Data      string
	Truncated bool
	// Body is the whole body of the notification.
	Body string
}

// userNotificationsSQL finds a user's notifications through the partial
// index events_user_notifications (migration 00008): a GIN index of the
// recipients of user notifications only. It reads all of the user's
// notifications' index entries and the rows after the cursor, so a page
// costs in proportion to how many notifications the user has after it.
const userNotificationsSQL = `SELECT position, id, type, source, subject, data::text, occurred_at FROM events
	WHERE type = 'chat.notification.user' AND data -> 'userIds' @> jsonb_build_array(?::text) AND position > ?
	ORDER BY position LIMIT ?`

// UserNotifications returns up to limit of the notifications sent to userID
// (chat.notification.user events that list them) after the one at position
// after (0: from the first), oldest first, and whether more follow. Rooms
// notifications went to room channels and are not a user's.
func UserNotifications(ctx context.Context, db *gorm.DB, userID string, after int64, limit int) ([]UserNotification, bool, error) {
	if limit <= 0 {
		return nil, false, fmt.Errorf("read the notifications of user %q: limit %d, want a positive one", userID, limit)
	}
	rows, err := db.WithContext(ctx).Raw(userNotificationsSQL, userID, after, limit+1).Rows()
	if err != nil {
		return nil, false, fmt.Errorf("read the notifications of user %q: %w", userID, err)
	}
	defer func() { _ = rows.Close() }()
	var out []UserNotification
	for rows.Next() {
		if len(out) == limit {
			return out, true, nil
		}
		var (
			n           UserNotification
			typ, source string
			subject     *string
			data        []byte
		)
		if err := rows.Scan(&n.Position, &n.EventID, &typ, &source, &subject, &data, &n.OccurredAt); err != nil {
			return nil, false, fmt.Errorf("read the notifications of user %q: %w", userID, err)
		}
		env, err := historyEnvelope(n.EventID, typ, source, subject, data)
		if err != nil {
			return nil, false, fmt.Errorf("read the notifications of user %q: event %s no longer decodes: %w", userID, n.EventID, err)
		}
		ds, err := domain.NotificationDeliveries(env)
		if err != nil {
			return nil, false, fmt.Errorf("read the notifications of user %q: %w", userID, err)
		}
		if len(ds) == 0 {
			return nil, false, fmt.Errorf("read the notifications of user %q: event %s owes no delivery", userID, n.EventID)
		}
		n.Data, n.Truncated = ds[0].Data, ds[0].Truncated
		if un, ok := env.Event.(domain.UserNotification); ok {
			n.Body = un.Notification.Body
		}
		n.OccurredAt = n.OccurredAt.UTC()
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("read the notifications of user %q: %w", userID, err)
	}
	return out, false, nil
}
