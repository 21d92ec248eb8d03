-- Orders and the facts the saga has learned about them (docs/saga.md). Money in minor
-- units; one currency per order. Other modules' ids (user, product, reservation, payment)
-- are plain values: no foreign keys across schemas.
CREATE TABLE orders (
    id               uuid PRIMARY KEY,
    user_id          uuid NOT NULL,
    status           text NOT NULL CHECK (status IN
                         ('pending', 'awaiting_payment', 'confirmed', 'shipped', 'delivered', 'rejected', 'cancelled')),
    currency         text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    subtotal         bigint NOT NULL CHECK (subtotal >= 0),
    shipping         bigint NOT NULL CHECK (shipping >= 0),
    total            bigint NOT NULL CHECK (total = subtotal + shipping),
    shipping_address jsonb NOT NULL,
    payment_method   text NOT NULL,
    -- What inventory said: awaiting, reserved, rejected or expired, with the reservation
    -- or the rejected lines.
    stock            text NOT NULL DEFAULT 'awaiting' CHECK (stock IN ('awaiting', 'reserved', 'rejected', 'expired')),
    reservation_id   uuid,
    rejected_lines   jsonb,
    -- The first payment failure.
    failed_payment_id uuid,
    failure_code     text,
    pay_by           timestamptz,
    cancel_reason    text,
    cancel_detail    text,
    carrier          text,
    tracking_number  text,
    -- The customer's Idempotency-Key and a digest of what was asked, stored with the order
    -- itself, so a retry finds the order even if the HTTP-level record was lost.
    idempotency_key  text NOT NULL,
    request_digest   bytea NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);
CREATE UNIQUE INDEX orders_idempotency_key ON orders (user_id, idempotency_key);
CREATE INDEX orders_by_user_idx ON orders (user_id, created_at, id);
CREATE INDEX orders_by_created_idx ON orders (created_at, id);
CREATE INDEX orders_by_status_idx ON orders (status, created_at, id);

CREATE TABLE order_lines (
    order_id   uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    position   integer NOT NULL,
    product_id uuid NOT NULL,
    sku        text NOT NULL,
    name       text NOT NULL,
    quantity   integer NOT NULL CHECK (quantity BETWEEN 1 AND 100),
    unit_price bigint NOT NULL CHECK (unit_price >= 0),
    line_total bigint NOT NULL CHECK (line_total = unit_price * quantity),
    PRIMARY KEY (order_id, position)
);

-- Payments captured for an order: one row per payment, so a capture delivered twice is
-- seen once, and a second or late capture is refunded once.
CREATE TABLE order_payments (
    order_id         uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    payment_id       uuid NOT NULL,
    amount           bigint NOT NULL,
    currency         text NOT NULL,
    refund_requested boolean NOT NULL DEFAULT false,
    refunded         bigint NOT NULL DEFAULT 0,
    captured_at      timestamptz NOT NULL,
    PRIMARY KEY (order_id, payment_id)
);

-- The status history: every status an order took, when, and what caused it.
CREATE TABLE order_timeline (
    seq        bigserial PRIMARY KEY,
    order_id   uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    at         timestamptz NOT NULL,
    status     text NOT NULL,
    cause_kind text NOT NULL CHECK (cause_kind IN ('request', 'event', 'job')),
    cause_id   text NOT NULL,
    reason     text
);
CREATE INDEX order_timeline_by_order_idx ON order_timeline (order_id, seq);
