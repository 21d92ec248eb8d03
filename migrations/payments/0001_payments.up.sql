-- Payments, one per order, and the immutable ledger of the money they moved (docs/payments.md).
-- Money in minor units, in the payment's one currency. Other modules' ids (order, user) are
-- plain values: no foreign keys across schemas.
CREATE TABLE payments (
    id                uuid PRIMARY KEY,
    -- One payment per order: a payment request delivered twice creates one payment.
    order_id          uuid NOT NULL UNIQUE,
    user_id           uuid NOT NULL,
    amount            bigint NOT NULL CHECK (amount > 0),
    currency          text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    payment_method    text NOT NULL,
    status            text NOT NULL CHECK (status IN
                          ('pending', 'authorized', 'captured', 'partially_refunded', 'refunded', 'failed', 'voided')),
    -- The gateway's id of the authorization, once it gave one.
    gateway_reference text,
    failure_code      text,
    failure_message   text,
    -- The order was cancelled: whatever is not captured yet is voided, never captured.
    cancel_requested  boolean NOT NULL DEFAULT false,
    pay_by            timestamptz NOT NULL,
    -- Caches of the ledger's sums, kept in the same transaction as its entries (a test
    -- checks they always match).
    captured          bigint NOT NULL DEFAULT 0,
    refunded          bigint NOT NULL DEFAULT 0,
    -- The metadata of the request that created the payment: its follow-ups continue its
    -- correlation.
    metadata          jsonb NOT NULL,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    CHECK (captured BETWEEN 0 AND amount),
    CHECK (refunded BETWEEN 0 AND captured)
);
CREATE INDEX payments_by_user_idx ON payments (user_id, created_at, id);
CREATE INDEX payments_by_created_idx ON payments (created_at, id);
-- What reconciliation looks at: payments not settled yet.
CREATE INDEX payments_unsettled_idx ON payments (updated_at) WHERE status IN ('pending', 'authorized');

-- Refunds: asked by orders (an event) or by an admin (a request with an Idempotency-Key).
CREATE TABLE refunds (
    id                uuid PRIMARY KEY,
    payment_id        uuid NOT NULL REFERENCES payments (id),
    amount            bigint NOT NULL CHECK (amount > 0),
    currency          text NOT NULL,
    reason            text NOT NULL,
    -- What asked for it: `order-event:<event id>` or `admin:<user>:<Idempotency-Key>`; asking
    -- twice creates one refund.
    source            text NOT NULL UNIQUE,
    requested_by      text NOT NULL,
    status            text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    gateway_reference text,
    failure_message   text,
    metadata          jsonb NOT NULL,
    created_at        timestamptz NOT NULL,
    -- Last change, or last look by reconciliation.
    updated_at        timestamptz NOT NULL,
    completed_at      timestamptz
);
CREATE INDEX refunds_by_payment_idx ON refunds (payment_id, created_at);
-- What reconciliation looks at: refunds not carried out yet.
CREATE INDEX refunds_pending_idx ON refunds (updated_at) WHERE status = 'pending';

-- One entry per money movement, never changed or removed. A payment's balances are sums
-- over its entries.
CREATE TABLE ledger_entries (
    id                uuid PRIMARY KEY,
    payment_id        uuid NOT NULL REFERENCES payments (id),
    kind              text NOT NULL CHECK (kind IN ('authorization', 'capture', 'void', 'refund')),
    amount            bigint NOT NULL CHECK (amount > 0),
    currency          text NOT NULL,
    refund_id         uuid REFERENCES refunds (id),
    gateway_reference text NOT NULL,
    recorded_at       timestamptz NOT NULL,
    CHECK ((kind = 'refund') = (refund_id IS NOT NULL))
);
-- At most one authorization, capture and void per payment and one entry per refund: the
-- ledger itself refuses to record a movement twice.
CREATE UNIQUE INDEX ledger_entries_once_idx ON ledger_entries (payment_id, kind) WHERE kind <> 'refund';
CREATE UNIQUE INDEX ledger_entries_refund_once_idx ON ledger_entries (refund_id) WHERE kind = 'refund';

CREATE FUNCTION ledger_entries_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger entries are immutable: record a new entry instead'
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER ledger_entries_immutable
    BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_are_immutable();
CREATE TRIGGER ledger_entries_not_truncated
    BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_are_immutable();

-- Webhook calls already applied, by the gateway's event id: a replayed call is refused.
CREATE TABLE webhook_events (
    id          text PRIMARY KEY,
    event_type  text NOT NULL,
    payment_id  uuid,
    received_at timestamptz NOT NULL
);
