-- The catalogue, stock levels and reservations. Money in minor units; available stock is
-- on_hand - reserved and never negative.
CREATE TABLE products (
    id                  uuid PRIMARY KEY,
    sku                 text NOT NULL CHECK (sku ~ '^[A-Z0-9][A-Z0-9._-]{0,63}$'),
    name                text NOT NULL,
    description         text NOT NULL DEFAULT '',
    price               bigint NOT NULL CHECK (price >= 0),
    currency            text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    active              boolean NOT NULL DEFAULT true,
    archived_at         timestamptz,
    on_hand             integer NOT NULL DEFAULT 0 CHECK (on_hand >= 0),
    reserved            integer NOT NULL DEFAULT 0 CHECK (reserved >= 0 AND reserved <= on_hand),
    low_stock_threshold integer NOT NULL DEFAULT 0 CHECK (low_stock_threshold >= 0),
    -- Set when `inventory.low_stock` was sent; cleared when stock rises above the threshold,
    -- so the event goes out once per crossing.
    low_stock_alerted   boolean NOT NULL DEFAULT false,
    -- Bumped on every change a client can see: the ETag.
    version             bigint NOT NULL DEFAULT 1,
    search              tsvector GENERATED ALWAYS AS (
                            setweight(to_tsvector('simple', name), 'A') ||
                            setweight(to_tsvector('simple', description), 'B')) STORED,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);
CREATE UNIQUE INDEX products_sku_key ON products (sku);
CREATE INDEX products_search_idx ON products USING gin (search);
CREATE INDEX products_by_price_idx ON products (price, id) WHERE archived_at IS NULL;
CREATE INDEX products_by_name_idx ON products (name, id) WHERE archived_at IS NULL;
CREATE INDEX products_by_created_idx ON products (created_at, id) WHERE archived_at IS NULL;

-- Every change of on_hand, immutable: the sum of a product's movements is its on_hand.
CREATE TABLE stock_movements (
    id            uuid PRIMARY KEY,
    product_id    uuid NOT NULL REFERENCES products (id),
    kind          text NOT NULL CHECK (kind IN ('receive', 'correct', 'write_off', 'commit', 'restock')),
    quantity      integer NOT NULL CHECK (quantity <> 0),
    on_hand_after integer NOT NULL CHECK (on_hand_after >= 0),
    reason        text NOT NULL,
    order_id      uuid,
    actor         text,
    at            timestamptz NOT NULL
);
CREATE INDEX stock_movements_by_product_idx ON stock_movements (product_id, at, id);

-- One per order: held (reserved), committed (on_hand decremented), released (cancelled
-- while held), expired (TTL reached), restocked (cancelled after commit) or rejected.
CREATE TABLE reservations (
    id         uuid PRIMARY KEY,
    order_id   uuid NOT NULL,
    status     text NOT NULL CHECK (status IN ('held', 'committed', 'released', 'expired', 'restocked', 'rejected')),
    expires_at timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX reservations_order_key ON reservations (order_id);

CREATE TABLE reservation_lines (
    reservation_id uuid NOT NULL REFERENCES reservations (id) ON DELETE CASCADE,
    product_id     uuid NOT NULL REFERENCES products (id),
    quantity       integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (reservation_id, product_id)
);
