-- The module's published event log (DESIGN §4). Other modules' roles may SELECT it; only
-- the owning module writes it, inside the transaction of the state change it records.
CREATE TABLE outbox (
    id             uuid        PRIMARY KEY,          -- event id, UUIDv7
    append_seq     bigserial   NOT NULL,             -- append order, also within one transaction
    position       bigint      UNIQUE,               -- NULL until the sequencer sees it committed
    event_type     text        NOT NULL,             -- e.g. orders.order_placed
    event_version  integer     NOT NULL CHECK (event_version > 0),
    aggregate_key  text        NOT NULL,             -- ordering and partitioning key
    key_hash       integer     NOT NULL CHECK (key_hash >= 0), -- murmur2 of the key, as Kafka's partitioner
    payload        jsonb       NOT NULL,
    metadata       jsonb       NOT NULL DEFAULT '{}', -- correlation, causation, actor, traceparent
    occurred_at    timestamptz NOT NULL DEFAULT now(),
    sequenced_at   timestamptz
);

CREATE INDEX outbox_unsequenced ON outbox (append_seq) WHERE position IS NULL;
CREATE INDEX outbox_sequenced_at ON outbox (sequenced_at) WHERE position IS NOT NULL;
