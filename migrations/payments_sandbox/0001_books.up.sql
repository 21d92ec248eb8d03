-- The sandbox gateway's books (ADR 0021): a card processor's own records, kept in a schema of
-- their own so they outlive restarts of every process that calls the gateway, as a real
-- processor's do. Not payments' data: payments never reads these tables.

-- One row per payment the gateway has seen, by our payment id (the gateway's reference).
CREATE TABLE payments_sandbox.charges (
    payment_id     uuid PRIMARY KEY,
    reference      text NOT NULL,
    amount         bigint NOT NULL,
    currency       text NOT NULL,
    captured       bigint NOT NULL DEFAULT 0,
    refunded       bigint NOT NULL DEFAULT 0,
    status         text NOT NULL CHECK (status IN ('processing', 'authorized', 'captured', 'voided', 'declined')),
    decline_code   text,
    -- Asynchronous payment methods: when the outcome is decided, and what it is.
    decide_at      timestamptz,
    decided_status text CHECK (decided_status IN ('authorized', 'declined')),
    decided_code   text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (refunded BETWEEN 0 AND captured)
);
CREATE INDEX charges_undecided_idx ON payments_sandbox.charges (decide_at) WHERE status = 'processing';

-- One row per idempotency key: the stored answer (replayed to the same key), how often it was
-- asked and carried out (tests prove nothing moved twice), and whether a request with it is
-- under way (a second one is refused, as real gateways answer 409).
CREATE TABLE payments_sandbox.requests (
    idempotency_key text PRIMARY KEY,
    requests        integer NOT NULL DEFAULT 0,
    executions      integer NOT NULL DEFAULT 0,
    answer          jsonb,
    in_flight_until timestamptz,
    failed_once     boolean NOT NULL DEFAULT false
);

-- Webhooks to send: the outcome of an asynchronous payment, retried until delivered.
CREATE TABLE payments_sandbox.webhooks (
    id           uuid PRIMARY KEY,
    payment_id   uuid NOT NULL,
    body         text NOT NULL,
    due_at       timestamptz NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    delivered_at timestamptz,
    last_error   text
);
CREATE INDEX webhooks_due_idx ON payments_sandbox.webhooks (due_at) WHERE delivered_at IS NULL;

-- The gateway's own switch: while `outage_until` is ahead, every call answers 503.
CREATE TABLE payments_sandbox.control (
    id           boolean PRIMARY KEY DEFAULT true CHECK (id),
    outage_until timestamptz
);
INSERT INTO payments_sandbox.control (id) VALUES (true);
