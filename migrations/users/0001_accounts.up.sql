-- Accounts. `email` is stored normalised (trimmed, lower case), so uniqueness is
-- case-insensitive by construction.
CREATE TABLE users (
    id                  uuid PRIMARY KEY,
    email               text NOT NULL CHECK (email = lower(btrim(email))),
    display_name        text NOT NULL,
    password_hash       text NOT NULL,
    roles               text[] NOT NULL CHECK (cardinality(roles) > 0 AND roles <@ ARRAY['customer', 'admin']),
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deactivated')),
    email_verified_at   timestamptz,
    preferences         jsonb NOT NULL,
    password_changed_at timestamptz NOT NULL,
    deactivated_at      timestamptz,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (email);
-- Admin listing: newest first by default, email prefix search.
CREATE INDEX users_created_at_idx ON users (created_at, id);
CREATE INDEX users_email_prefix_idx ON users (email text_pattern_ops);

-- A session is one login: the family of refresh tokens rotated from it. Revoking the
-- session ends every token of the family.
CREATE TABLE sessions (
    id                uuid PRIMARY KEY,
    user_id           uuid NOT NULL REFERENCES users (id),
    created_at        timestamptz NOT NULL,
    expires_at        timestamptz NOT NULL,
    last_refreshed_at timestamptz,
    revoked_at        timestamptz,
    revoked_reason    text,
    client_address    text,
    user_agent        text
);
CREATE INDEX sessions_live_by_user_idx ON sessions (user_id) WHERE revoked_at IS NULL;

-- Refresh tokens, stored as SHA-256 of the token (the token itself is 256 random bits).
-- `rotated_at` set means it was exchanged already: presenting it again is reuse.
CREATE TABLE refresh_tokens (
    token_hash bytea PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    issued_at  timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    rotated_at timestamptz
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);

-- Email-verification and password-reset requests. The link's token is minted when the
-- message is sent (ADR 0008) and stored only as its SHA-256.
CREATE TABLE action_requests (
    id               uuid PRIMARY KEY,
    user_id          uuid NOT NULL REFERENCES users (id),
    purpose          text NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    requested_at     timestamptz NOT NULL,
    mintable_until   timestamptz NOT NULL,
    token_hash       bytea UNIQUE,
    token_expires_at timestamptz,
    used_at          timestamptz,
    superseded_at    timestamptz
);
CREATE INDEX action_requests_open_idx ON action_requests (user_id, purpose)
    WHERE used_at IS NULL AND superseded_at IS NULL;

-- Failed sign-ins per account (normalised email, whether or not it exists) and per client
-- address; the backoff is computed from `failures` and `last_failure_at`.
CREATE TABLE login_failures (
    scope           text NOT NULL CHECK (scope IN ('account', 'client')),
    key             text NOT NULL,
    failures        integer NOT NULL,
    last_failure_at timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);
