-- Kafka transport (DESIGN §4): how far a module's relay has forwarded its outbox to a topic.
-- One row per topic; a relay holds it FOR UPDATE while it produces a batch, so one relay per
-- module runs at a time across replicas, and the position moves only after the broker
-- acknowledged every event up to it. Retention keeps outbox rows no relay has forwarded yet.
CREATE TABLE bus_relay (
    topic       text        PRIMARY KEY,
    position    bigint      NOT NULL DEFAULT 0,
    relayed_at  timestamptz
);
