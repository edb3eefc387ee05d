-- The grants of roomcast_run, the role `roomcast run` connects as: it reads
-- and writes rows, and cannot change the schema, drop a table or delete the
-- event store's rows; and of roomcast_api, the role `roomcast api` connects
-- as: it reads the rows it answers from and nothing else. The schema belongs
-- to another role, the owner, which runs `roomcast migrate` and
-- `roomcast replay rebuild` (they create, alter, swap and drop tables) and
-- nothing else.
--
-- Run this as the owner, in roomcast's database, after `roomcast migrate up`:
--
--   psql "$OWNER_DATABASE_URL" -v ON_ERROR_STOP=1 -f deployments/postgres/runtime-role.sql
--
-- once the roles exist (an administrator creates them, e.g.
-- CREATE ROLE roomcast_run LOGIN PASSWORD '...'; roomcast_api likewise, if
-- you run the API). Running it again is harmless.
-- deployments/checks' TestRuntimeRole runs this file and then the worker and
-- the API as those roles; it fails if a grant either needs is missing here,
-- or if the API's role can write.

DO $$ BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO roomcast_run', current_database());
END $$;
GRANT USAGE ON SCHEMA public TO roomcast_run;

-- The event store: appended to; updated only to redact a deleted message's
-- text and to link an event to its outbox row. Never deleted from.
GRANT SELECT, INSERT, UPDATE ON events TO roomcast_run;
-- The read models: a deleted message keeps its row (its text emptied); a
-- member who leaves is deleted.
GRANT SELECT, INSERT, UPDATE ON messages, rooms TO roomcast_run;
GRANT SELECT, INSERT, UPDATE, DELETE ON room_members TO roomcast_run;
-- The outbox: rows are written, marked, and deleted once Pusher has them.
GRANT SELECT, INSERT, UPDATE, DELETE ON deliveries TO roomcast_run;
-- Each batch reserves its deliveries' ids with nextval (migration 00006).
GRANT USAGE ON SEQUENCE deliveries_id_seq TO roomcast_run;
-- `roomcast run` refuses to start on a schema older than it needs: it reads
-- goose's version table.
GRANT SELECT ON goose_db_version TO roomcast_run;

-- Nothing is needed for the rest: LISTEN/NOTIFY (a replica's commit wakes
-- the leading dispatcher) and advisory locks (the one dispatcher) are open
-- to every role, and so are the system catalogs roomcast reads.
--
-- Tables a later migration creates get the same row privileges. A migration
-- that needs a narrower grant on a new table says so in its file.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO roomcast_run;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON SEQUENCES TO roomcast_run;

-- roomcast_api: SELECT on the tables the API reads (membership, the room's
-- last seq, the event store for the events feed and notifications, the
-- messages), and on goose's version table, since `roomcast api` too refuses
-- to start on a schema older than it needs. No INSERT, UPDATE or DELETE, no
-- sequence, not the outbox (deliveries), and no default privileges: a table
-- a later migration creates stays closed to the API until a line here opens
-- it (TestRuntimeRole fails until then, if the API reads it). Skipped, with a
-- notice, where the role does not exist (an installation without the API).
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'roomcast_api') THEN
        RAISE NOTICE 'no role roomcast_api: the API''s grants are skipped (create the role and run this file again)';
        RETURN;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO roomcast_api', current_database());
    GRANT USAGE ON SCHEMA public TO roomcast_api;
    GRANT SELECT ON events, messages, rooms, room_members TO roomcast_api;
    GRANT SELECT ON goose_db_version TO roomcast_api;
END $$;
