//! Email-verification and password-reset requests and their one-time tokens (hashed).

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use users_contract::{ActionPurpose, ActionRequestId, UserId};
use uuid::Uuid;

pub(crate) fn purpose_name(purpose: ActionPurpose) -> &'static str {
    match purpose {
        ActionPurpose::VerifyEmail => "verify_email",
        ActionPurpose::ResetPassword => "reset_password",
    }
}

fn parse_purpose(raw: &str) -> anyhow::Result<ActionPurpose> {
    match raw {
        "verify_email" => Ok(ActionPurpose::VerifyEmail),
        "reset_password" => Ok(ActionPurpose::ResetPassword),
        other => anyhow::bail!("unknown action purpose {other:?}"),
    }
}

/// Opens a request, superseding the open ones of the same purpose (only the newest link
/// works).
pub(crate) async fn open(
    db: &mut PgConnection,
    user: UserId,
    purpose: ActionPurpose,
    at: DateTime<Utc>,
    mintable_until: DateTime<Utc>,
) -> anyhow::Result<ActionRequestId> {
    close_all(db, user, purpose, at).await?;
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO action_requests (id, user_id, purpose, requested_at, mintable_until) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(user.0)
    .bind(purpose_name(purpose))
    .bind(at)
    .bind(mintable_until)
    .execute(db)
    .await
    .context("opening a request")?;
    Ok(ActionRequestId(id))
}

/// When the newest open request of `purpose` was made (throttles repeated requests).
pub(crate) async fn latest_open(
    db: &mut PgConnection,
    user: UserId,
    purpose: ActionPurpose,
) -> anyhow::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar(
        "SELECT max(requested_at) FROM action_requests
          WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL AND superseded_at IS NULL",
    )
    .bind(user.0)
    .bind(purpose_name(purpose))
    .fetch_one(db)
    .await
    .context("reading open requests")
}

/// A request that may have a link minted now.
#[derive(Debug)]
pub(crate) struct Mintable {
    pub(crate) user_id: UserId,
    pub(crate) purpose: ActionPurpose,
}

/// Stores the hash of a freshly minted token for an open, not-too-old request, replacing any
/// earlier token of it. `None` when the request cannot have a link.
pub(crate) async fn mint(
    db: &mut PgConnection,
    request: ActionRequestId,
    token_hash: &[u8],
    at: DateTime<Utc>,
    expiry_of: impl Fn(ActionPurpose) -> DateTime<Utc>,
) -> anyhow::Result<Option<Mintable>> {
    let row: Option<(Uuid, String)> = sqlx::query_as(
        "SELECT user_id, purpose FROM action_requests
          WHERE id = $1 AND used_at IS NULL AND superseded_at IS NULL AND mintable_until > $2
            FOR UPDATE",
    )
    .bind(request.0)
    .bind(at)
    .fetch_optional(&mut *db)
    .await
    .context("reading a request")?;
    let Some((user, purpose)) = row else { return Ok(None) };
    let purpose = parse_purpose(&purpose)?;
    sqlx::query("UPDATE action_requests SET token_hash = $2, token_expires_at = $3 WHERE id = $1")
        .bind(request.0)
        .bind(token_hash)
        .bind(expiry_of(purpose))
        .execute(db)
        .await
        .context("storing a minted token")?;
    Ok(Some(Mintable { user_id: UserId(user), purpose }))
}

/// Uses a token once: marks its request used when the token is current, unexpired and of
/// `purpose`. Returns the user it was for.
pub(crate) async fn redeem(
    db: &mut PgConnection,
    token_hash: &[u8],
    purpose: ActionPurpose,
    at: DateTime<Utc>,
) -> anyhow::Result<Option<UserId>> {
    let user: Option<Uuid> = sqlx::query_scalar(
        "UPDATE action_requests SET used_at = $3
          WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND superseded_at IS NULL
            AND token_expires_at > $3
         RETURNING user_id",
    )
    .bind(token_hash)
    .bind(purpose_name(purpose))
    .bind(at)
    .fetch_optional(db)
    .await
    .context("redeeming a token")?;
    Ok(user.map(UserId))
}

/// Closes every open request of `purpose` for `user` (superseded by a newer one, or after a
/// successful reset).
pub(crate) async fn close_all(
    db: &mut PgConnection,
    user: UserId,
    purpose: ActionPurpose,
    at: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE action_requests SET superseded_at = $3
          WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL AND superseded_at IS NULL",
    )
    .bind(user.0)
    .bind(purpose_name(purpose))
    .bind(at)
    .execute(db)
    .await
    .context("closing requests")?;
    Ok(())
}
