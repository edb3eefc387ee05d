-- +goose Up
-- The outbox row of an event is written in the same transaction as the
-- event, and events are never deleted: the foreign key only added a lookup
-- and a row lock on events (FOR KEY SHARE, written to the events page) for
-- every delivery, the most expensive part of writing the outbox in batches.
ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_event_id_fkey;

-- +goose Down
ALTER TABLE deliveries ADD CONSTRAINT deliveries_event_id_fkey FOREIGN KEY (event_id) REFERENCES events (id);
