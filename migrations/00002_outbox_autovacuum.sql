-- +goose Up
-- Every outbox row is updated once (delivered) and deleted later (purged):
-- with the default thresholds (20% of the table) dead entries pile up in the
-- pending index and the dispatcher's reads slow down as a backlog drains.
ALTER TABLE deliveries SET (
    autovacuum_vacuum_scale_factor = 0.0,
    autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_analyze_scale_factor = 0.05
);

-- +goose Down
ALTER TABLE deliveries RESET (
    autovacuum_vacuum_scale_factor,
    autovacuum_vacuum_threshold,
    autovacuum_vacuum_cost_delay,
    autovacuum_analyze_scale_factor
);
