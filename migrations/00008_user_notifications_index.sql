-- +goose NO TRANSACTION
-- +goose Up
-- roomcast api lists a user's notifications (GET /users/me/notifications):
-- the chat.notification.user events whose data.userIds name them. A GIN
-- index of those recipients, on user notifications only, finds them; other
-- events (every room event) take no entry and pay nothing for it. Built
-- concurrently, so that the worker goes on writing events meanwhile; a
-- build that failed half-way leaves an invalid index, dropped first.
DROP INDEX CONCURRENTLY IF EXISTS events_user_notifications;
CREATE INDEX CONCURRENTLY events_user_notifications ON events USING gin ((data -> 'userIds') jsonb_path_ops)
    WHERE type = 'chat.notification.user';

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS events_user_notifications;
