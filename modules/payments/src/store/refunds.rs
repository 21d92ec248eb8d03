//! Refunds: asked by orders or an admin, carried out by a job.

use anyhow::Context;
use chrono::{DateTime, Utc};
use payments_contract::PaymentId;
use platform::bus::Metadata;
use serde::Serialize;
use sqlx::PgConnection;
use sqlx::types::Json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::RefundStatus;

/// A refund as stored.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub(crate) struct RefundRow {
    pub(crate) id: Uuid,
    #[sqlx(try_from = "Uuid")]
    #[schema(value_type = Uuid)]
    pub(crate) payment_id: PaymentId,
    /// Minor units of the payment's currency.
    pub(crate) amount: i64,
    pub(crate) currency: String,
    pub(crate) reason: String,
    /// `orders` (the order saga) or `admin:<user id>`.
    pub(crate) requested_by: String,
    /// `pending`, `succeeded` or `failed`.
    #[schema(value_type = String)]
    pub(crate) status: RefundStatus,
    pub(crate) gateway_reference: Option<String>,
    pub(crate) failure_message: Option<String>,
    #[serde(skip)]
    pub(crate) metadata: Json<Metadata>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) completed_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, payment_id, amount, currency, reason, requested_by, status, gateway_reference,
    failure_message, metadata, created_at, completed_at";

/// What a new refund holds.
#[derive(Debug, Clone)]
pub(crate) struct NewRefund<'a> {
    pub(crate) id: Uuid,
    pub(crate) payment_id: PaymentId,
    pub(crate) amount: i64,
    pub(crate) currency: &'a str,
    pub(crate) reason: &'a str,
    pub(crate) source: &'a str,
    pub(crate) requested_by: &'a str,
    pub(crate) metadata: &'a Metadata,
}

pub(crate) async fn insert(db: &mut PgConnection, refund: &NewRefund<'_>, now: DateTime<Utc>) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO refunds (id, payment_id, amount, currency, reason, source, requested_by, status, metadata,
                              created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $9)",
    )
    .bind(refund.id)
    .bind(refund.payment_id.into_inner())
    .bind(refund.amount)
    .bind(refund.currency)
    .bind(refund.reason)
    .bind(refund.source)
    .bind(refund.requested_by)
    .bind(Json(refund.metadata))
    .bind(now)
    .execute(db)
    .await
    .context("inserting a refund")?;
    Ok(())
}

pub(crate) async fn find(db: &mut PgConnection, id: Uuid) -> anyhow::Result<Option<RefundRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM refunds WHERE id = $1")))
        .bind(id)
        .fetch_optional(db)
        .await
        .context("reading a refund")
}

pub(crate) async fn by_source(db: &mut PgConnection, source: &str) -> anyhow::Result<Option<RefundRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM refunds WHERE source = $1")))
        .bind(source)
        .fetch_optional(db)
        .await
        .context("finding a refund by what asked for it")
}

/// A payment's refunds, oldest first.
pub(crate) async fn of_payment(db: &mut PgConnection, payment_id: PaymentId) -> anyhow::Result<Vec<RefundRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM refunds WHERE payment_id = $1 ORDER BY created_at, id"
    )))
    .bind(payment_id.into_inner())
    .fetch_all(db)
    .await
    .context("reading a payment's refunds")
}

/// What pending and succeeded refunds of a payment add up to: what is no longer refundable.
pub(crate) async fn committed(db: &mut PgConnection, payment_id: PaymentId) -> anyhow::Result<i64> {
    sqlx::query_scalar(
        "SELECT COALESCE(sum(amount), 0)::bigint FROM refunds WHERE payment_id = $1 AND status <> 'failed'",
    )
    .bind(payment_id.into_inner())
    .fetch_one(db)
    .await
    .context("adding up a payment's refunds")
}

/// Ends a pending refund; whether it was still pending.
pub(crate) async fn complete(
    db: &mut PgConnection,
    id: Uuid,
    outcome: Result<&str, &str>,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let (status, reference, failure) = match outcome {
        Ok(reference) => (RefundStatus::Succeeded, Some(reference), None),
        Err(failure) => (RefundStatus::Failed, None, Some(failure)),
    };
    let updated = sqlx::query(
        "UPDATE refunds SET status = $2, gateway_reference = $3, failure_message = $4, completed_at = $5, updated_at = $5
          WHERE id = $1 AND status = 'pending'",
    )
    .bind(id)
    .bind(status)
    .bind(reference)
    .bind(failure)
    .bind(now)
    .execute(db)
    .await
    .context("completing a refund")?
    .rows_affected();
    Ok(updated == 1)
}

/// Refunds still pending and unchanged since `before`, oldest first; each is marked as looked
/// at, so the next run leaves it alone until `before` passes it again.
pub(crate) async fn stuck(
    db: &mut PgConnection,
    before: DateTime<Utc>,
    now: DateTime<Utc>,
    limit: i64,
) -> anyhow::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "UPDATE refunds SET updated_at = $2
          WHERE id IN (SELECT id FROM refunds WHERE status = 'pending' AND updated_at < $1
                        ORDER BY updated_at LIMIT $3 FOR UPDATE SKIP LOCKED)
         RETURNING id",
    )
    .bind(before)
    .bind(now)
    .bind(limit)
    .fetch_all(db)
    .await
    .context("finding stuck refunds")
}
