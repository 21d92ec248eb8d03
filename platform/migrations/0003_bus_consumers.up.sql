-- The consuming side of the event bus, kept in the subscriber's schema so a subscriber's
-- progress commits in the same transaction as its handlers' effects (DESIGN §4).

-- One row per subscription partition: a consumer group's committed offset.
CREATE TABLE bus_cursors (
    subscription  text        NOT NULL,
    partition     integer     NOT NULL CHECK (partition >= 0),
    partitions    integer     NOT NULL CHECK (partitions > 0),
    source        text        NOT NULL,             -- the publishing module
    position      bigint      NOT NULL DEFAULT 0,   -- last position handled or dead-lettered
    attempts      integer     NOT NULL DEFAULT 0,   -- failed attempts at the next event
    last_error    text,
    retry_at      timestamptz,                      -- the partition waits until then
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription, partition)
);

-- Live members of each subscription's consumer group (one per process hosting it). Partitions
-- are dealt round-robin over the live members, as Kafka's group coordinator would.
CREATE TABLE bus_members (
    subscription  text        NOT NULL,
    member        uuid        NOT NULL,
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription, member)
);

-- Events a handler kept failing on, with their cause; replayable.
CREATE TABLE dead_letters (
    id                uuid        PRIMARY KEY,
    subscription      text        NOT NULL,
    partition         integer     NOT NULL,
    source            text        NOT NULL,
    position          bigint      NOT NULL,
    event_id          uuid        NOT NULL,
    event_type        text        NOT NULL,
    event_version     integer     NOT NULL,
    aggregate_key     text        NOT NULL,
    payload           jsonb       NOT NULL,
    metadata          jsonb       NOT NULL,
    occurred_at       timestamptz NOT NULL,
    error             text        NOT NULL,
    attempts          integer     NOT NULL,
    dead_lettered_at  timestamptz NOT NULL DEFAULT now(),
    replayed_at       timestamptz,
    UNIQUE (subscription, event_id)
);

CREATE INDEX dead_letters_waiting ON dead_letters (subscription, dead_lettered_at) WHERE replayed_at IS NULL;
