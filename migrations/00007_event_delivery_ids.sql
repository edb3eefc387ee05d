-- +goose Up
-- A deleted message's text is also erased from its deliveries Pusher has not
-- accepted yet. They were found through deliveries_undelivered_event, an
-- index on the outbox's event ids: random keys (UUIDs), one index entry per
-- delivery, paid on the hot path for the sake of the rare delete (dropping
-- it took ~3-4 µs of Postgres's CPU off each event under a backlog). A room
-- event's row now names its delivery instead, and a delete goes from the
-- message's event_ids to its events and their deliveries by primary keys.
ALTER TABLE events ADD COLUMN delivery_id bigint;
COMMENT ON COLUMN events.delivery_id IS 'the outbox row (deliveries.id) of a room event that owed one: what deleting its message redacts while Pusher has not accepted it';
-- Deliveries still owed when upgrading: linked through the index one last time.
UPDATE events AS e SET delivery_id = d.id FROM deliveries AS d
    WHERE d.event_id = e.id AND d.delivered_at IS NULL AND d.room_id IS NOT NULL;
DROP INDEX deliveries_undelivered_event;

-- +goose Down
CREATE INDEX deliveries_undelivered_event ON deliveries (event_id) WHERE delivered_at IS NULL;
ALTER TABLE events DROP COLUMN delivery_id;
