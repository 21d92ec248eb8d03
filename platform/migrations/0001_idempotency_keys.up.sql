-- Stored outcomes of requests sent with an Idempotency-Key (platform HTTP kit).
-- One table per module schema: a module's idempotency records move out with the module.
CREATE TABLE idempotency_keys (
    scope        text        NOT NULL,  -- who sent it: the token's subject, or 'anonymous'
    key          text        NOT NULL,
    fingerprint  bytea       NOT NULL,  -- sha256 of method, path and body
    status       smallint,              -- NULL while the first request is still running
    headers      jsonb,
    body         bytea,
    locked_until timestamptz NOT NULL,  -- an in-flight request abandoned past this may be retried
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);
