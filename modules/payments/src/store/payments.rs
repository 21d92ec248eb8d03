//! Payments: created from the order's payment request, then moved along by jobs, webhooks
//! and reconciliation, each under the row's lock.

use anyhow::Context;
use chrono::{DateTime, Utc};
use orders_contract::OrderId;
use payments_contract::PaymentId;
use platform::bus::Metadata;
use platform::http::PageRequest;
use platform::money::{Currency, Money};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{PgConnection, QueryBuilder};
use uuid::Uuid;

use crate::domain::PaymentStatus;

/// A payment as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct PaymentRow {
    #[sqlx(try_from = "Uuid")]
    pub(crate) id: PaymentId,
    #[sqlx(try_from = "Uuid")]
    pub(crate) order_id: OrderId,
    pub(crate) user_id: Uuid,
    pub(crate) amount: i64,
    pub(crate) currency: String,
    pub(crate) payment_method: String,
    pub(crate) status: PaymentStatus,
    pub(crate) gateway_reference: Option<String>,
    pub(crate) failure_code: Option<String>,
    pub(crate) failure_message: Option<String>,
    pub(crate) cancel_requested: bool,
    pub(crate) pay_by: DateTime<Utc>,
    pub(crate) captured: i64,
    pub(crate) refunded: i64,
    pub(crate) metadata: Json<Metadata>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
    /// Why a person must look at it (ADR 0021), until an admin acknowledges it.
    pub(crate) attention: Option<String>,
    pub(crate) attention_since: Option<DateTime<Utc>>,
    pub(crate) acknowledged_at: Option<DateTime<Utc>>,
    pub(crate) acknowledged_by: Option<String>,
    pub(crate) acknowledgement: Option<String>,
}

impl PaymentRow {
    pub(crate) fn money(&self, amount: i64) -> anyhow::Result<Money> {
        Ok(Money::new(amount, Currency::parse(&self.currency)?))
    }
}

const COLUMNS: &str = "id, order_id, user_id, amount, currency, payment_method, status, gateway_reference,
    failure_code, failure_message, cancel_requested, pay_by, captured, refunded, metadata, created_at, updated_at,
    attention, attention_since, acknowledged_at, acknowledged_by, acknowledgement";

/// What a new payment holds.
#[derive(Debug, Clone)]
pub(crate) struct NewPayment<'a> {
    pub(crate) id: PaymentId,
    pub(crate) order_id: OrderId,
    pub(crate) user_id: Uuid,
    pub(crate) amount: Money,
    pub(crate) payment_method: &'a str,
    pub(crate) pay_by: DateTime<Utc>,
    pub(crate) metadata: &'a Metadata,
}

/// Inserts the order's payment unless it has one; whether it was inserted.
pub(crate) async fn insert(
    db: &mut PgConnection,
    payment: &NewPayment<'_>,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO payments (id, order_id, user_id, amount, currency, payment_method, status, pay_by, metadata,
                               created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $9)
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(payment.id.into_inner())
    .bind(payment.order_id.0)
    .bind(payment.user_id)
    .bind(payment.amount.amount)
    .bind(payment.amount.currency.as_str())
    .bind(payment.payment_method)
    .bind(payment.pay_by)
    .bind(Json(payment.metadata))
    .bind(now)
    .execute(db)
    .await
    .context("inserting a payment")?
    .rows_affected();
    Ok(inserted == 1)
}

pub(crate) async fn find(db: &mut PgConnection, id: PaymentId) -> anyhow::Result<Option<PaymentRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM payments WHERE id = $1")))
        .bind(id.into_inner())
        .fetch_optional(db)
        .await
        .context("reading a payment")
}

/// The payment, locked until the transaction ends.
pub(crate) async fn lock(db: &mut PgConnection, id: PaymentId) -> anyhow::Result<Option<PaymentRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM payments WHERE id = $1 FOR UPDATE")))
        .bind(id.into_inner())
        .fetch_optional(db)
        .await
        .context("locking a payment")
}

/// The order's payment, locked until the transaction ends.
pub(crate) async fn lock_for_order(db: &mut PgConnection, order_id: OrderId) -> anyhow::Result<Option<PaymentRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM payments WHERE order_id = $1 FOR UPDATE")))
        .bind(order_id.0)
        .fetch_optional(db)
        .await
        .context("locking an order's payment")
}

/// What a transition changes besides the status.
#[derive(Debug, Clone, Default)]
pub(crate) struct Change<'a> {
    pub(crate) gateway_reference: Option<&'a str>,
    pub(crate) failure: Option<(&'a str, &'a str)>,
    pub(crate) captured: Option<i64>,
    pub(crate) refunded: Option<i64>,
    pub(crate) cancel_requested: bool,
}

pub(crate) async fn update(
    db: &mut PgConnection,
    id: PaymentId,
    status: PaymentStatus,
    change: &Change<'_>,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE payments
            SET status = $2,
                gateway_reference = COALESCE($3, gateway_reference),
                failure_code = COALESCE($4, failure_code),
                failure_message = COALESCE($5, failure_message),
                captured = COALESCE($6, captured),
                refunded = COALESCE($7, refunded),
                cancel_requested = cancel_requested OR $8,
                updated_at = $9
          WHERE id = $1",
    )
    .bind(id.into_inner())
    .bind(status.as_str())
    .bind(change.gateway_reference)
    .bind(change.failure.map(|(code, _)| code))
    .bind(change.failure.map(|(_, message)| message))
    .bind(change.captured)
    .bind(change.refunded)
    .bind(change.cancel_requested)
    .bind(now)
    .execute(db)
    .await
    .context("updating a payment")?;
    Ok(())
}

/// Marks that reconciliation looked at the payment, so it waits its turn again.
pub(crate) async fn touch(db: &mut PgConnection, id: PaymentId, now: DateTime<Utc>) -> anyhow::Result<()> {
    sqlx::query("UPDATE payments SET updated_at = $2 WHERE id = $1")
        .bind(id.into_inner())
        .bind(now)
        .execute(db)
        .await
        .context("touching a payment")?;
    Ok(())
}

/// Payments pending or authorized and unchanged since `before`, oldest first.
pub(crate) async fn unsettled(
    db: &mut PgConnection,
    before: DateTime<Utc>,
    limit: i64,
) -> anyhow::Result<Vec<PaymentId>> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM payments WHERE status IN ('pending', 'authorized') AND updated_at < $1
          ORDER BY updated_at LIMIT $2",
    )
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await
    .context("finding unsettled payments")?;
    Ok(ids.into_iter().map(PaymentId::from).collect())
}

/// Flags the payment for a person, with why; an earlier flag keeps its time.
pub(crate) async fn flag_attention(
    db: &mut PgConnection,
    id: PaymentId,
    reason: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE payments SET attention = $2, attention_since = coalesce(attention_since, $3),
                acknowledged_at = NULL, acknowledged_by = NULL, acknowledgement = NULL
          WHERE id = $1",
    )
    .bind(id.into_inner())
    .bind(reason)
    .bind(now)
    .execute(db)
    .await
    .context("flagging a payment for attention")?;
    Ok(())
}

/// Clears the payment's flag with an admin's note; false when it had none.
pub(crate) async fn acknowledge(
    db: &mut PgConnection,
    id: PaymentId,
    admin: &str,
    note: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE payments SET attention = NULL, acknowledged_at = $2, acknowledged_by = $3, acknowledgement = $4
          WHERE id = $1 AND attention IS NOT NULL",
    )
    .bind(id.into_inner())
    .bind(now)
    .bind(admin)
    .bind(note)
    .execute(db)
    .await
    .context("acknowledging a payment's flag")?;
    Ok(done.rows_affected() == 1)
}

/// How many payments wait for a person.
pub(crate) async fn needing_attention(db: &mut PgConnection) -> anyhow::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM payments WHERE attention IS NOT NULL")
        .fetch_one(db)
        .await
        .context("counting payments that need attention")
}

/// Which payments a list shows.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListFilter {
    pub(crate) user_id: Option<Uuid>,
    pub(crate) order_id: Option<OrderId>,
    pub(crate) status: Option<PaymentStatus>,
    /// Only those a person must look at (or only those not).
    pub(crate) needs_attention: Option<bool>,
}

/// A list's cursor: the last row's creation time and id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ListKey(pub(crate) DateTime<Utc>, pub(crate) PaymentId);

/// One page, newest first (`limit + 1` rows fetched).
pub(crate) async fn list(
    db: &mut PgConnection,
    filter: &ListFilter,
    page: &PageRequest<ListKey>,
) -> anyhow::Result<Vec<PaymentRow>> {
    let descending = page.sort.keys().first().is_none_or(|k| k.descending);
    let mut query = QueryBuilder::new(format!("SELECT {COLUMNS} FROM payments WHERE true"));
    if let Some(user) = filter.user_id {
        query.push(" AND user_id = ").push_bind(user);
    }
    if let Some(order) = filter.order_id {
        query.push(" AND order_id = ").push_bind(order.0);
    }
    if let Some(status) = filter.status {
        query.push(" AND status = ").push_bind(status.as_str());
    }
    match filter.needs_attention {
        Some(true) => query.push(" AND attention IS NOT NULL"),
        Some(false) => query.push(" AND attention IS NULL"),
        None => &mut query,
    };
    let (op, direction) = if descending { ("<", "DESC") } else { (">", "ASC") };
    if let Some(ListKey(at, id)) = &page.after {
        let id = id.into_inner();
        query.push(format!(" AND (created_at, id) {op} (")).push_bind(*at).push(", ").push_bind(id).push(")");
    }
    query.push(format!(" ORDER BY created_at {direction}, id {direction} LIMIT "));
    query.push_bind(i64::from(page.limit) + 1);
    query.build_query_as().fetch_all(db).await.context("listing payments")
}
