-- +goose Up
-- deliveries_event finds the deliveries of a deleted message to redact them,
-- and only deliveries not yet delivered are ever redacted. Indexing only
-- those spares an index entry for every delivered row: marking a delivery
-- delivered writes a new row version, and a full index took an entry for it
-- too (a random place in the index for each delivery).
DROP INDEX IF EXISTS deliveries_event;
CREATE INDEX deliveries_undelivered_event ON deliveries (event_id) WHERE delivered_at IS NULL;

-- +goose Down
DROP INDEX IF EXISTS deliveries_undelivered_event;
CREATE INDEX deliveries_event ON deliveries (event_id);
