-- +goose Up
-- events is the append-only event store: every accepted event, once per
-- CloudEvents id. Only redaction (a deleted message's text) ever rewrites it.
CREATE TABLE events (
    id              text PRIMARY KEY,
    position        bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    type            text NOT NULL,
    source          text NOT NULL,
    subject         text,
    room_id         text,
    seq             bigint,
    data            jsonb NOT NULL,
    fingerprint     text NOT NULL,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    kafka_partition integer,
    kafka_offset    bigint
);
COMMENT ON COLUMN events.fingerprint IS 'sha256 of type and canonical data as first received: tells a redelivery from an id reused with another payload';
CREATE INDEX events_room_seq ON events (room_id, seq) WHERE seq IS NOT NULL;
CREATE INDEX events_message ON events (room_id, (data ->> 'messageId'))
    WHERE type IN ('chat.message.created', 'chat.message.edited');

-- rooms holds each room's last assigned seq; its row lock orders a room's projections.
CREATE TABLE rooms (
    room_id    text PRIMARY KEY,
    last_seq   bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE messages (
    id            text PRIMARY KEY,
    room_id       text NOT NULL,
    seq           bigint NOT NULL,
    author_id     text NOT NULL,
    author_name   text NOT NULL,
    author_avatar text,
    content       text NOT NULL,
    created_at    timestamptz NOT NULL,
    edited_at     timestamptz,
    edited_by     text,
    deleted_at    timestamptz,
    deleted_by    text
);
CREATE INDEX messages_room_seq ON messages (room_id, seq);

CREATE TABLE room_members (
    room_id     text NOT NULL,
    user_id     text NOT NULL,
    user_name   text NOT NULL,
    user_avatar text,
    joined_at   timestamptz NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_members_user ON room_members (user_id);

-- deliveries is the outbox: the Pusher triggers each projected event owes,
-- written in the projection's transaction and marked when Pusher accepts them.
CREATE TABLE deliveries (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id      text NOT NULL REFERENCES events (id),
    room_id       text,
    seq           bigint,
    channels      text[] NOT NULL,
    name          text NOT NULL,
    data          text NOT NULL,
    socket_id     text,
    truncated     boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text,
    delivered_at  timestamptz,
    parked_at     timestamptz,
    parked_reason text
);
CREATE INDEX deliveries_pending ON deliveries (id) WHERE delivered_at IS NULL AND parked_at IS NULL;
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_parked ON deliveries (parked_at) WHERE parked_at IS NOT NULL;

-- +goose Down
DROP TABLE deliveries;
DROP TABLE room_members;
DROP TABLE messages;
DROP TABLE rooms;
DROP TABLE events;
