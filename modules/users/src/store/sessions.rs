//! Sessions (refresh-token families) and their refresh tokens, stored as SHA-256 hashes.

use std::net::IpAddr;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use users_contract::UserId;
use uuid::Uuid;

/// Why a session ended; stored for support and audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RevokeReason {
    Logout,
    RefreshTokenReused,
    PasswordReset,
    PasswordChanged,
    Deactivated,
}

impl RevokeReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::RefreshTokenReused => "refresh_token_reused",
            Self::PasswordReset => "password_reset",
            Self::PasswordChanged => "password_changed",
            Self::Deactivated => "deactivated",
        }
    }
}

pub(crate) struct NewSession<'a> {
    pub(crate) id: Uuid,
    pub(crate) user_id: UserId,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) expires_at: DateTime<Utc>,
    pub(crate) client_address: Option<IpAddr>,
    pub(crate) user_agent: Option<&'a str>,
}

pub(crate) async fn insert(db: &mut PgConnection, session: &NewSession<'_>) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO sessions (id, user_id, created_at, expires_at, client_address, user_agent)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(session.id)
    .bind(session.user_id.0)
    .bind(session.created_at)
    .bind(session.expires_at)
    .bind(session.client_address.map(|ip| ip.to_string()))
    .bind(session.user_agent.map(|ua| ua.chars().take(512).collect::<String>()))
    .execute(db)
    .await
    .context("starting a session")?;
    Ok(())
}

pub(crate) async fn insert_refresh_token(
    db: &mut PgConnection,
    hash: &[u8],
    session: Uuid,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(hash)
        .bind(session)
        .bind(issued_at)
        .bind(expires_at)
        .execute(db)
        .await
        .context("storing a refresh token")?;
    Ok(())
}

/// A presented refresh token with its session, both locked until the transaction ends.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PresentedToken {
    pub(crate) session_id: Uuid,
    pub(crate) user_id: Uuid,
    pub(crate) token_expires_at: DateTime<Utc>,
    pub(crate) rotated_at: Option<DateTime<Utc>>,
    pub(crate) session_expires_at: DateTime<Utc>,
    pub(crate) revoked_at: Option<DateTime<Utc>>,
}

pub(crate) async fn find_token_for_update(
    db: &mut PgConnection,
    hash: &[u8],
) -> anyhow::Result<Option<PresentedToken>> {
    sqlx::query_as(
        "SELECT t.session_id, s.user_id, t.expires_at AS token_expires_at, t.rotated_at,
                s.expires_at AS session_expires_at, s.revoked_at
           FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
          WHERE t.token_hash = $1
            FOR UPDATE OF t, s",
    )
    .bind(hash)
    .fetch_optional(db)
    .await
    .context("reading a refresh token")
}

pub(crate) async fn mark_rotated(db: &mut PgConnection, hash: &[u8], at: DateTime<Utc>) -> anyhow::Result<()> {
    sqlx::query("UPDATE refresh_tokens SET rotated_at = $2 WHERE token_hash = $1")
        .bind(hash)
        .bind(at)
        .execute(&mut *db)
        .await
        .context("rotating a refresh token")?;
    Ok(())
}

pub(crate) async fn touch(db: &mut PgConnection, session: Uuid, at: DateTime<Utc>) -> anyhow::Result<()> {
    sqlx::query("UPDATE sessions SET last_refreshed_at = $2 WHERE id = $1")
        .bind(session)
        .bind(at)
        .execute(db)
        .await
        .context("touching a session")?;
    Ok(())
}

/// Revokes one session (no-op when already revoked). Returns whether it was live.
pub(crate) async fn revoke(
    db: &mut PgConnection,
    session: Uuid,
    reason: RevokeReason,
    at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let revoked =
        sqlx::query("UPDATE sessions SET revoked_at = $2, revoked_reason = $3 WHERE id = $1 AND revoked_at IS NULL")
            .bind(session)
            .bind(at)
            .bind(reason.as_str())
            .execute(db)
            .await
            .context("revoking a session")?;
    Ok(revoked.rows_affected() == 1)
}

/// Revokes every live session of `user` except `keep`. Returns the ones that ended.
pub(crate) async fn revoke_all(
    db: &mut PgConnection,
    user: UserId,
    keep: Option<Uuid>,
    reason: RevokeReason,
    at: DateTime<Utc>,
) -> anyhow::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "UPDATE sessions SET revoked_at = $3, revoked_reason = $4
          WHERE user_id = $1 AND revoked_at IS NULL AND id IS DISTINCT FROM $2
          RETURNING id",
    )
    .bind(user.0)
    .bind(keep)
    .bind(at)
    .bind(reason.as_str())
    .fetch_all(db)
    .await
    .context("revoking sessions")
}

/// The user of a live session (for logout by refresh token).
pub(crate) async fn session_of_token(db: &mut PgConnection, hash: &[u8]) -> anyhow::Result<Option<Uuid>> {
    sqlx::query_scalar("SELECT session_id FROM refresh_tokens WHERE token_hash = $1")
        .bind(hash)
        .fetch_optional(db)
        .await
        .context("finding a refresh token's session")
}

/// The user a session belongs to.
pub(crate) async fn user_of(db: &mut PgConnection, session: Uuid) -> anyhow::Result<Option<UserId>> {
    let user: Option<Uuid> = sqlx::query_scalar("SELECT user_id FROM sessions WHERE id = $1")
        .bind(session)
        .fetch_optional(db)
        .await
        .context("finding a session's user")?;
    Ok(user.map(UserId))
}
