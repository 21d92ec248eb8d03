//! Reading orders for the API: one order with its lines and timeline, pages of orders, and
//! the timeline after a point (for the event stream).

use anyhow::Context;
use chrono::{DateTime, Utc};
use inventory_contract::{ProductId, Quantity};
use orders_contract::events::RejectedLine;
use orders_contract::{OrderLine, OrderStatus, ShippingAddress};
use platform::http::PageRequest;
use platform::money::{Currency, Money};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{PgConnection, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

/// One status an order took.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub(crate) struct TimelineEntry {
    /// Increases along an order's history; the `id` of its Server-Sent Event.
    #[serde(skip)]
    pub(crate) seq: i64,
    pub(crate) at: DateTime<Utc>,
    #[sqlx(try_from = "String")]
    pub(crate) status: OrderStatus,
    /// `request`, `event` or `job`.
    pub(crate) cause_kind: String,
    /// The request id, event id or job id.
    pub(crate) cause_id: String,
    pub(crate) reason: Option<String>,
}

/// An order as the stored row has it (lines and timeline added by [`find`]).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct OrderRow {
    pub(crate) id: Uuid,
    pub(crate) user_id: Uuid,
    #[sqlx(try_from = "String")]
    pub(crate) status: OrderStatus,
    pub(crate) currency: String,
    pub(crate) subtotal: i64,
    pub(crate) shipping: i64,
    pub(crate) total: i64,
    pub(crate) shipping_address: Json<ShippingAddress>,
    pub(crate) rejected_lines: Option<Json<Vec<RejectedLine>>>,
    pub(crate) pay_by: Option<DateTime<Utc>>,
    pub(crate) cancel_reason: Option<String>,
    pub(crate) cancel_detail: Option<String>,
    pub(crate) carrier: Option<String>,
    pub(crate) tracking_number: Option<String>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

/// An order with everything the API shows.
#[derive(Debug, Clone)]
pub(crate) struct FullOrder {
    pub(crate) row: OrderRow,
    pub(crate) lines: Vec<OrderLine>,
    pub(crate) timeline: Vec<TimelineEntry>,
    pub(crate) refunded: i64,
}

macro_rules! select_orders {
    ($rest:literal) => {
        concat!(
            "SELECT id, user_id, status, currency, subtotal, shipping, total, shipping_address, rejected_lines, pay_by,
                    cancel_reason, cancel_detail, carrier, tracking_number, created_at, updated_at
               FROM orders ",
            $rest
        )
    };
}

pub(crate) async fn find(db: &mut PgConnection, id: Uuid) -> anyhow::Result<Option<FullOrder>> {
    let row: Option<OrderRow> = sqlx::query_as(select_orders!("WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *db)
        .await
        .context("reading an order")?;
    let Some(row) = row else { return Ok(None) };
    let currency = Currency::parse(&row.currency)?;
    let lines: Vec<(Uuid, String, String, i32, i64, i64)> = sqlx::query_as(
        "SELECT product_id, sku, name, quantity, unit_price, line_total FROM order_lines WHERE order_id = $1 ORDER BY position",
    )
    .bind(id)
    .fetch_all(&mut *db)
    .await
    .context("reading order lines")?;
    let lines = lines
        .into_iter()
        .map(|(product_id, sku, name, quantity, unit, total)| {
            Ok(OrderLine {
                product_id: ProductId::from(product_id),
                sku,
                name,
                quantity: Quantity::try_from(quantity)
                    .map_err(|why| anyhow::anyhow!("order line quantity {quantity}: {why}"))?,
                unit_price: Money::new(unit, currency),
                line_total: Money::new(total, currency),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let timeline = timeline_after(db, id, 0).await?;
    let refunded: Option<i64> =
        sqlx::query_scalar("SELECT sum(refunded)::bigint FROM order_payments WHERE order_id = $1")
            .bind(id)
            .fetch_one(&mut *db)
            .await
            .context("reading refunds")?;
    Ok(Some(FullOrder { row, lines, timeline, refunded: refunded.unwrap_or_default() }))
}

/// Timeline entries of `order` after `after` (a `seq`), oldest first.
pub(crate) async fn timeline_after(
    db: &mut PgConnection,
    order: Uuid,
    after: i64,
) -> anyhow::Result<Vec<TimelineEntry>> {
    sqlx::query_as(
        "SELECT seq, at, status, cause_kind, cause_id, reason FROM order_timeline
          WHERE order_id = $1 AND seq > $2 ORDER BY seq",
    )
    .bind(order)
    .bind(after)
    .fetch_all(db)
    .await
    .context("reading an order's timeline")
}

/// The customer an order belongs to.
pub(crate) async fn owner(db: &mut PgConnection, order: Uuid) -> anyhow::Result<Option<Uuid>> {
    sqlx::query_scalar("SELECT user_id FROM orders WHERE id = $1")
        .bind(order)
        .fetch_optional(db)
        .await
        .context("reading an order's customer")
}

/// An order's status.
pub(crate) async fn status(db: &mut PgConnection, order: Uuid) -> anyhow::Result<Option<OrderStatus>> {
    let raw: Option<String> = sqlx::query_scalar("SELECT status FROM orders WHERE id = $1")
        .bind(order)
        .fetch_optional(db)
        .await
        .context("reading an order's status")?;
    raw.map(|raw| OrderStatus::parse(&raw).with_context(|| format!("unknown order status {raw:?}"))).transpose()
}

/// Which orders a listing covers.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListFilter {
    /// Only this customer's (always set for customers).
    pub(crate) user_id: Option<Uuid>,
    pub(crate) status: Option<OrderStatus>,
    pub(crate) created_from: Option<DateTime<Utc>>,
    pub(crate) created_before: Option<DateTime<Utc>>,
}

pub(crate) const SORTABLE: &[&str] = &["created_at", "total"];

/// The sort key of a listed order: the sort field's value and the id as tie-breaker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum ListKey {
    CreatedAt(DateTime<Utc>, Uuid),
    Total(i64, Uuid),
}

pub(crate) fn list_key(row: &OrderRow, by_total: bool) -> ListKey {
    if by_total { ListKey::Total(row.total, row.id) } else { ListKey::CreatedAt(row.created_at, row.id) }
}

/// One page of orders (`limit + 1` rows fetched).
pub(crate) async fn list(
    db: &mut PgConnection,
    filter: &ListFilter,
    page: &PageRequest<ListKey>,
) -> anyhow::Result<Vec<OrderRow>> {
    let key = page.sort.keys().first().copied();
    let by_total = key.is_some_and(|k| k.field == "total");
    let descending = key.is_none_or(|k| k.descending);
    let mut query = QueryBuilder::new(select_orders!("WHERE true"));
    if let Some(user) = filter.user_id {
        query.push(" AND user_id = ").push_bind(user);
    }
    if let Some(status) = filter.status {
        query.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(from) = filter.created_from {
        query.push(" AND created_at >= ").push_bind(from);
    }
    if let Some(before) = filter.created_before {
        query.push(" AND created_at < ").push_bind(before);
    }
    let op = if descending { "<" } else { ">" };
    match &page.after {
        Some(ListKey::CreatedAt(at, id)) if !by_total => {
            query.push(format!(" AND (created_at, id) {op} (")).push_bind(*at).push(", ").push_bind(*id).push(")");
        }
        Some(ListKey::Total(total, id)) if by_total => {
            query.push(format!(" AND (total, id) {op} (")).push_bind(*total).push(", ").push_bind(*id).push(")");
        }
        Some(_) => anyhow::bail!("a cursor of another sort reached the query"),
        None => {}
    }
    let column = if by_total { "total" } else { "created_at" };
    let direction = if descending { "DESC" } else { "ASC" };
    query.push(format!(" ORDER BY {column} {direction}, id {direction} LIMIT "));
    query.push_bind(i64::from(page.limit) + 1);
    query.build_query_as().fetch_all(db).await.context("listing orders")
}
