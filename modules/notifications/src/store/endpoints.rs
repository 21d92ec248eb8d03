//! Webhook endpoints.

use anyhow::Context;
use chrono::{DateTime, Utc};
use platform::http::PageRequest;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, QueryBuilder};
use uuid::Uuid;

use crate::domain::EndpointStatus;

/// An endpoint as stored. `Debug` leaves the secret out.
#[derive(Clone, sqlx::FromRow)]
pub(crate) struct EndpointRow {
    pub(crate) id: Uuid,
    pub(crate) url: String,
    pub(crate) description: Option<String>,
    pub(crate) event_types: Vec<String>,
    pub(crate) secret: String,
    pub(crate) status: EndpointStatus,
    pub(crate) consecutive_failures: i32,
    pub(crate) disabled_reason: Option<String>,
    pub(crate) created_by: Uuid,
    pub(crate) request_digest: Option<Vec<u8>>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for EndpointRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointRow")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl EndpointRow {
    pub(crate) fn secret(&self) -> SecretString {
        SecretString::from(self.secret.clone())
    }

    pub(crate) fn enabled(&self) -> bool {
        self.status == EndpointStatus::Enabled
    }
}

macro_rules! select_endpoints {
    ($rest:literal) => {
        concat!(
            "SELECT id, url, description, event_types, secret, status, consecutive_failures, disabled_reason,
                    created_by, request_digest, created_at, updated_at
               FROM webhook_endpoints ",
            $rest
        )
    };
}

/// An endpoint about to be registered. `Debug` leaves the secret out.
pub(crate) struct NewEndpoint<'a> {
    pub(crate) id: Uuid,
    pub(crate) url: &'a str,
    pub(crate) description: Option<&'a str>,
    pub(crate) event_types: &'a [String],
    pub(crate) secret: &'a str,
    pub(crate) created_by: Uuid,
    pub(crate) idempotency_key: Option<&'a str>,
    pub(crate) request_digest: &'a [u8],
    pub(crate) at: DateTime<Utc>,
}

impl std::fmt::Debug for NewEndpoint<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewEndpoint").field("id", &self.id).field("url", &self.url).finish_non_exhaustive()
    }
}

/// Registers an endpoint; `false` when the creator already used the idempotency key.
pub(crate) async fn insert(db: &mut PgConnection, e: &NewEndpoint<'_>) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO webhook_endpoints (id, url, description, event_types, secret, created_by, idempotency_key,
                                        request_digest, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
         ON CONFLICT (created_by, idempotency_key) DO NOTHING",
    )
    .bind(e.id)
    .bind(e.url)
    .bind(e.description)
    .bind(e.event_types)
    .bind(e.secret)
    .bind(e.created_by)
    .bind(e.idempotency_key)
    .bind(e.request_digest)
    .bind(e.at)
    .execute(db)
    .await
    .context("registering a webhook endpoint")?;
    Ok(done.rows_affected() == 1)
}

/// The endpoint `creator` registered with `key` (deleted or not).
pub(crate) async fn find_by_key(
    db: &mut PgConnection,
    creator: Uuid,
    key: &str,
) -> anyhow::Result<Option<(EndpointRow, bool)>> {
    let row: Option<(Uuid, Option<DateTime<Utc>>)> =
        sqlx::query_as("SELECT id, deleted_at FROM webhook_endpoints WHERE created_by = $1 AND idempotency_key = $2")
            .bind(creator)
            .bind(key)
            .fetch_optional(&mut *db)
            .await
            .context("finding a webhook endpoint by idempotency key")?;
    let Some((id, deleted_at)) = row else { return Ok(None) };
    let endpoint: Option<EndpointRow> = sqlx::query_as(select_endpoints!("WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
        .context("reading a webhook endpoint")?;
    Ok(endpoint.map(|e| (e, deleted_at.is_some())))
}

/// A registered, not deleted endpoint.
pub(crate) async fn find(db: &mut PgConnection, id: Uuid) -> anyhow::Result<Option<EndpointRow>> {
    sqlx::query_as(select_endpoints!("WHERE id = $1 AND deleted_at IS NULL"))
        .bind(id)
        .fetch_optional(db)
        .await
        .context("reading a webhook endpoint")
}

/// Endpoints, enabled or disabled but not deleted, that asked for `event_type`.
pub(crate) async fn subscribed(db: &mut PgConnection, event_type: &str) -> anyhow::Result<Vec<EndpointRow>> {
    sqlx::query_as(select_endpoints!("WHERE deleted_at IS NULL AND $1 = ANY (event_types) ORDER BY created_at, id"))
        .bind(event_type)
        .fetch_all(db)
        .await
        .context("finding the endpoints of an event type")
}

/// Deletes an endpoint (its deliveries stay, for the record). `false` if there was none.
pub(crate) async fn delete(db: &mut PgConnection, id: Uuid, at: DateTime<Utc>) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE webhook_endpoints SET deleted_at = $2, updated_at = $2 WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(at)
    .execute(db)
    .await
    .context("deleting a webhook endpoint")?;
    Ok(done.rows_affected() == 1)
}

/// A delivery got a 2xx: the failure streak ends.
pub(crate) async fn succeeded(db: &mut PgConnection, id: Uuid, at: DateTime<Utc>) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE webhook_endpoints SET consecutive_failures = 0, updated_at = $2
          WHERE id = $1 AND consecutive_failures <> 0",
    )
    .bind(id)
    .bind(at)
    .execute(db)
    .await
    .context("resetting an endpoint's failures")?;
    Ok(())
}

/// A delivery attempt failed: counts it, and disables the endpoint once `limit` failed in a
/// row. Returns whether this failure disabled it.
pub(crate) async fn failed(db: &mut PgConnection, id: Uuid, limit: u32, at: DateTime<Utc>) -> anyhow::Result<bool> {
    let limit = i32::try_from(limit).unwrap_or(i32::MAX);
    let disabled: Option<bool> = sqlx::query_scalar(
        "UPDATE webhook_endpoints
            SET consecutive_failures = consecutive_failures + 1, updated_at = $3,
                status = CASE WHEN consecutive_failures + 1 >= $2 THEN 'disabled' ELSE status END,
                disabled_reason = CASE WHEN consecutive_failures + 1 >= $2 AND status = 'enabled'
                                       THEN format('%s delivery attempts failed in a row', consecutive_failures + 1)
                                       ELSE disabled_reason END
          WHERE id = $1
      RETURNING status = 'disabled' AND consecutive_failures = $2",
    )
    .bind(id)
    .bind(limit)
    .bind(at)
    .fetch_optional(db)
    .await
    .context("counting an endpoint's failure")?;
    Ok(disabled.unwrap_or(false))
}

/// Turns a disabled endpoint back on, its failure count cleared.
pub(crate) async fn enable(db: &mut PgConnection, id: Uuid, at: DateTime<Utc>) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE webhook_endpoints SET status = 'enabled', consecutive_failures = 0, disabled_reason = NULL,
                updated_at = $2
          WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(at)
    .execute(db)
    .await
    .context("enabling a webhook endpoint")?;
    Ok(done.rows_affected() == 1)
}

pub(crate) const SORTABLE: &[&str] = &["created_at"];

/// The sort key of a listed endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ListKey(pub(crate) DateTime<Utc>, pub(crate) Uuid);

pub(crate) fn list_key(row: &EndpointRow) -> ListKey {
    ListKey(row.created_at, row.id)
}

/// One page of endpoints (`limit + 1` fetched).
pub(crate) async fn list(db: &mut PgConnection, page: &PageRequest<ListKey>) -> anyhow::Result<Vec<EndpointRow>> {
    let descending = page.sort.keys().first().is_none_or(|k| k.descending);
    let mut query = QueryBuilder::new(select_endpoints!("WHERE deleted_at IS NULL"));
    let (op, direction) = if descending { ("<", "DESC") } else { (">", "ASC") };
    if let Some(ListKey(at, id)) = &page.after {
        query.push(format!(" AND (created_at, id) {op} (")).push_bind(*at).push(", ").push_bind(*id).push(")");
    }
    query.push(format!(" ORDER BY created_at {direction}, id {direction} LIMIT "));
    query.push_bind(i64::from(page.limit) + 1);
    query.build_query_as().fetch_all(db).await.context("listing webhook endpoints")
}
