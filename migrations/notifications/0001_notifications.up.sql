-- The notifications module (docs/notifications.md): what was sent to whom because of which
-- event, every delivery attempt, webhook endpoints, and the order owners payments' events
-- need. Other modules' ids (users, orders, events) are plain values.

-- Who placed each order, learned from `orders.order_placed`: payments' events name the order
-- only, and the customer is told about their payment.
CREATE TABLE order_owners (
    order_id    uuid PRIMARY KEY,
    user_id     uuid NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- Integrations registered by admins. The secret signs payloads (HMAC-SHA256), so it is kept
-- as the server must use it; it is shown once on creation, never listed or logged.
CREATE TABLE webhook_endpoints (
    id                   uuid PRIMARY KEY,
    url                  text NOT NULL,
    description          text,
    event_types          text[] NOT NULL,
    secret               text NOT NULL,
    status               text NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'disabled')),
    consecutive_failures integer NOT NULL DEFAULT 0,
    disabled_reason      text,
    created_by           uuid NOT NULL,
    -- The creator's Idempotency-Key and a digest of what was asked, kept with the endpoint so
    -- a retry answers with it (ADR 0013: not in idempotency_keys, which would copy the secret).
    idempotency_key      text,
    request_digest       bytea,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    deleted_at           timestamptz
);
CREATE UNIQUE INDEX webhook_endpoints_idempotency_key ON webhook_endpoints (created_by, idempotency_key);
CREATE INDEX webhook_endpoints_by_created_idx ON webhook_endpoints (created_at, id);

-- One message to one recipient on one channel because of one event: exactly once, by the
-- unique (event_key, channel, recipient). `event_key` identifies the event by its type and
-- payload, so a redelivery (same id) and a duplicate publication (new id, same payload) are
-- both recognised (docs/notifications.md). Email rows hold the template and its variables, not
-- the rendered body: a message with a one-time link is rendered when it is sent (ADR 0008).
CREATE TABLE notifications (
    id           uuid PRIMARY KEY,
    event_id     uuid NOT NULL,
    event_key    uuid NOT NULL,
    event_type   text NOT NULL,
    channel      text NOT NULL CHECK (channel IN ('email', 'webhook')),
    -- `user:<id>` for email, `endpoint:<id>` for webhooks.
    recipient    text NOT NULL,
    user_id      uuid,
    endpoint_id  uuid REFERENCES webhook_endpoints (id),
    address      text,
    template     text,
    subject      text,
    -- Email: the template's variables (no secret); webhook: the JSON body to sign and send.
    content      jsonb NOT NULL,
    status       text NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
    -- Why it was skipped or failed (the last error while pending).
    reason       text,
    attempts     integer NOT NULL DEFAULT 0,
    -- Increases with each manual retry, so its job gets a new idempotency key.
    generation   integer NOT NULL DEFAULT 0,
    sent_at      timestamptz,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    UNIQUE (event_key, channel, recipient)
);
CREATE INDEX notifications_by_user_idx ON notifications (user_id, created_at, id);
CREATE INDEX notifications_by_created_idx ON notifications (created_at, id);
CREATE INDEX notifications_by_endpoint_idx ON notifications (endpoint_id, created_at, id);
CREATE INDEX notifications_by_status_idx ON notifications (status, created_at, id);

-- Every attempt to deliver a notification: when, how it went, how long it took.
CREATE TABLE delivery_attempts (
    id              bigserial PRIMARY KEY,
    notification_id uuid NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    attempt         integer NOT NULL,
    at              timestamptz NOT NULL,
    outcome         text NOT NULL CHECK (outcome IN ('succeeded', 'transient_failure', 'permanent_failure')),
    response_code   integer,
    latency_ms      bigint NOT NULL,
    error           text
);
CREATE INDEX delivery_attempts_by_notification_idx ON delivery_attempts (notification_id, id);
