//! Writing orders: placing one, and loading and saving the saga's facts.

use anyhow::Context;
use chrono::{DateTime, Utc};
use orders_contract::events::{CancellationReason, RejectedLine};
use orders_contract::{OrderId, OrderLine, OrderStatus, ShippingAddress};
use payments_contract::PaymentId;
use platform::money::{Currency, Money};
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use crate::domain::machine::{Capture, Stock};
use crate::domain::{Order, Totals};

/// What caused a status change, for the timeline.
#[derive(Debug, Clone)]
pub(crate) enum Cause {
    /// An HTTP request, by its request id.
    Request(String),
    /// An event of another module, by its id.
    Event(Uuid),
    /// A job, by its id.
    Job(String),
}

impl Cause {
    fn parts(&self) -> (&'static str, String) {
        match self {
            Self::Request(id) => ("request", id.clone()),
            Self::Event(id) => ("event", id.to_string()),
            Self::Job(id) => ("job", id.clone()),
        }
    }
}

/// A new order, priced.
#[derive(Debug)]
pub(crate) struct NewOrder {
    pub(crate) id: OrderId,
    pub(crate) user_id: Uuid,
    pub(crate) lines: Vec<OrderLine>,
    pub(crate) totals: Totals,
    pub(crate) shipping_address: ShippingAddress,
    pub(crate) payment_method: String,
    pub(crate) idempotency_key: String,
    pub(crate) request_digest: Vec<u8>,
    pub(crate) placed_at: DateTime<Utc>,
}

/// The order a customer placed with an Idempotency-Key, and the digest of what was asked.
pub(crate) async fn find_by_key(
    db: &mut PgConnection,
    user: Uuid,
    key: &str,
) -> anyhow::Result<Option<(OrderId, Vec<u8>)>> {
    let row: Option<(Uuid, Vec<u8>)> =
        sqlx::query_as("SELECT id, request_digest FROM orders WHERE user_id = $1 AND idempotency_key = $2")
            .bind(user)
            .bind(key)
            .fetch_optional(db)
            .await
            .context("finding an order by its idempotency key")?;
    Ok(row.map(|(id, digest)| (OrderId(id), digest)))
}

pub(crate) async fn insert(db: &mut PgConnection, order: &NewOrder, cause: &Cause) -> anyhow::Result<()> {
    let Totals { subtotal, shipping, total } = order.totals;
    sqlx::query(
        "INSERT INTO orders (id, user_id, status, currency, subtotal, shipping, total, shipping_address, payment_method,
                             idempotency_key, request_digest, created_at, updated_at)
         VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7, $8, $10, $11, $9, $9)",
    )
    .bind(order.id.0)
    .bind(order.user_id)
    .bind(total.currency.as_str())
    .bind(subtotal.amount)
    .bind(shipping.amount)
    .bind(total.amount)
    .bind(Json(&order.shipping_address))
    .bind(&order.payment_method)
    .bind(order.placed_at)
    .bind(&order.idempotency_key)
    .bind(&order.request_digest)
    .execute(&mut *db)
    .await
    .context("storing an order")?;
    let positions: Vec<i32> = (0..).take(order.lines.len()).collect();
    let products: Vec<Uuid> = order.lines.iter().map(|l| l.product_id.into_inner()).collect();
    let skus: Vec<&str> = order.lines.iter().map(|l| l.sku.as_str()).collect();
    let names: Vec<&str> = order.lines.iter().map(|l| l.name.as_str()).collect();
    let quantities: Vec<i32> = order.lines.iter().map(|l| l.quantity.as_i32()).collect();
    let prices: Vec<i64> = order.lines.iter().map(|l| l.unit_price.amount).collect();
    let totals: Vec<i64> = order.lines.iter().map(|l| l.line_total.amount).collect();
    sqlx::query(
        "INSERT INTO order_lines (order_id, position, product_id, sku, name, quantity, unit_price, line_total)
         SELECT $1, * FROM unnest($2::int[], $3::uuid[], $4::text[], $5::text[], $6::int[], $7::bigint[], $8::bigint[])",
    )
    .bind(order.id.0)
    .bind(&positions)
    .bind(&products)
    .bind(&skus)
    .bind(&names)
    .bind(&quantities)
    .bind(&prices)
    .bind(&totals)
    .execute(&mut *db)
    .await
    .context("storing order lines")?;
    record_status(db, order.id, order.placed_at, OrderStatus::Pending, cause, None).await
}

/// Whether `error` is the unique violation of an order placed twice with one key.
pub(crate) fn is_duplicate_key(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(cause.downcast_ref::<sqlx::Error>(), Some(sqlx::Error::Database(db))
            if db.is_unique_violation() && db.constraint() == Some("orders_idempotency_key"))
    })
}

/// Adds a timeline entry.
pub(crate) async fn record_status(
    db: &mut PgConnection,
    order: OrderId,
    at: DateTime<Utc>,
    status: OrderStatus,
    cause: &Cause,
    reason: Option<&str>,
) -> anyhow::Result<()> {
    let (kind, id) = cause.parts();
    sqlx::query(
        "INSERT INTO order_timeline (order_id, at, status, cause_kind, cause_id, reason) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(order.0)
    .bind(at)
    .bind(status.as_str())
    .bind(kind)
    .bind(id)
    .bind(reason)
    .execute(db)
    .await
    .context("recording an order's status")?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    user_id: Uuid,
    status: String,
    currency: String,
    total: i64,
    payment_method: String,
    stock: String,
    reservation_id: Option<Uuid>,
    rejected_lines: Option<Json<Vec<RejectedLine>>>,
    failed_payment_id: Option<Uuid>,
    failure_code: Option<String>,
    pay_by: Option<DateTime<Utc>>,
    cancel_reason: Option<String>,
    cancel_detail: Option<String>,
    carrier: Option<String>,
    tracking_number: Option<String>,
}

#[derive(sqlx::FromRow)]
struct PaymentRow {
    payment_id: Uuid,
    amount: i64,
    currency: String,
    refund_requested: bool,
    refunded: i64,
}

/// When the order was placed.
pub(crate) async fn placed_at(db: &mut PgConnection, id: OrderId) -> anyhow::Result<DateTime<Utc>> {
    sqlx::query_scalar("SELECT created_at FROM orders WHERE id = $1")
        .bind(id.0)
        .fetch_one(&mut *db)
        .await
        .context("reading when an order was placed")
}

/// The order with its saga facts, locked until the transaction ends (so two events about
/// one order apply one after the other).
pub(crate) async fn load_for_update(db: &mut PgConnection, id: OrderId) -> anyhow::Result<Option<Order>> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT id, user_id, status, currency, total, payment_method, stock, reservation_id, rejected_lines, failed_payment_id,
                failure_code, pay_by, cancel_reason, cancel_detail, carrier, tracking_number
           FROM orders WHERE id = $1 FOR UPDATE",
    )
    .bind(id.0)
    .fetch_optional(&mut *db)
    .await
    .context("loading an order")?;
    let Some(row) = row else { return Ok(None) };
    let payments: Vec<PaymentRow> = sqlx::query_as(
        "SELECT payment_id, amount, currency, refund_requested, refunded FROM order_payments
          WHERE order_id = $1 ORDER BY captured_at, payment_id",
    )
    .bind(id.0)
    .fetch_all(&mut *db)
    .await
    .context("loading an order's payments")?;
    let currency = Currency::parse(&row.currency)?;
    let stock = match (row.stock.as_str(), row.reservation_id) {
        ("reserved", Some(reservation)) => Stock::Reserved(reservation),
        ("expired", Some(reservation)) => Stock::Expired(reservation),
        ("rejected", _) => Stock::Rejected(row.rejected_lines.map(|l| l.0).unwrap_or_default()),
        _ => Stock::Awaiting,
    };
    let captures = payments
        .into_iter()
        .map(|p| {
            Ok(Capture {
                payment_id: PaymentId::from(p.payment_id),
                amount: Money::new(p.amount, Currency::parse(&p.currency)?),
                refund_requested: p.refund_requested,
                refunded: p.refunded,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Some(Order {
        id: OrderId(row.id),
        user_id: row.user_id,
        status: OrderStatus::parse(&row.status).with_context(|| format!("unknown status {:?}", row.status))?,
        total: Money::new(row.total, currency),
        payment_method: row.payment_method,
        stock,
        captures,
        failure: row.failed_payment_id.map(PaymentId::from).zip(row.failure_code),
        pay_by: row.pay_by,
        cancellation: row.cancel_reason.as_deref().and_then(parse_reason).map(|r| (r, row.cancel_detail)),
        shipment: row.carrier.zip(row.tracking_number),
    }))
}

pub(crate) fn reason_name(reason: CancellationReason) -> &'static str {
    match reason {
        CancellationReason::CustomerRequest => "customer_request",
        CancellationReason::PaymentFailed => "payment_failed",
        CancellationReason::PaymentTimeout => "payment_timeout",
        CancellationReason::ReservationExpired => "reservation_expired",
    }
}

fn parse_reason(raw: &str) -> Option<CancellationReason> {
    [
        CancellationReason::CustomerRequest,
        CancellationReason::PaymentFailed,
        CancellationReason::PaymentTimeout,
        CancellationReason::ReservationExpired,
    ]
    .into_iter()
    .find(|r| reason_name(*r) == raw)
}

/// Writes the order's status and facts back, with its captures.
pub(crate) async fn save(db: &mut PgConnection, order: &Order, at: DateTime<Utc>) -> anyhow::Result<()> {
    let (stock, reservation, rejected) = match &order.stock {
        Stock::Awaiting => ("awaiting", None, None),
        Stock::Reserved(id) => ("reserved", Some(*id), None),
        Stock::Expired(id) => ("expired", Some(*id), None),
        Stock::Rejected(lines) => ("rejected", None, Some(Json(lines))),
    };
    sqlx::query(
        "UPDATE orders SET status = $2, stock = $3, reservation_id = $4, rejected_lines = $5, failed_payment_id = $6,
                failure_code = $7, pay_by = $8, cancel_reason = $9, cancel_detail = $10, carrier = $11,
                tracking_number = $12, updated_at = $13
          WHERE id = $1",
    )
    .bind(order.id.0)
    .bind(order.status.as_str())
    .bind(stock)
    .bind(reservation)
    .bind(rejected)
    .bind(order.failure.as_ref().map(|f| f.0.into_inner()))
    .bind(order.failure.as_ref().map(|f| f.1.as_str()))
    .bind(order.pay_by)
    .bind(order.cancellation.as_ref().map(|c| reason_name(c.0)))
    .bind(order.cancellation.as_ref().and_then(|c| c.1.as_deref()))
    .bind(order.shipment.as_ref().map(|s| s.0.as_str()))
    .bind(order.shipment.as_ref().map(|s| s.1.as_str()))
    .bind(at)
    .execute(&mut *db)
    .await
    .context("saving an order")?;
    for capture in &order.captures {
        sqlx::query(
            "INSERT INTO order_payments (payment_id, order_id, amount, currency, refund_requested, refunded, captured_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (order_id, payment_id) DO UPDATE SET refund_requested = EXCLUDED.refund_requested, refunded = EXCLUDED.refunded",
        )
        .bind(capture.payment_id.into_inner())
        .bind(order.id.0)
        .bind(capture.amount.amount)
        .bind(capture.amount.currency.as_str())
        .bind(capture.refund_requested)
        .bind(capture.refunded)
        .bind(at)
        .execute(&mut *db)
        .await
        .context("saving an order's payment")?;
    }
    Ok(())
}
