//! Reservations: one per order, with the units held per product.

use anyhow::Context;
use chrono::{DateTime, Utc};
use inventory_contract::{ProductId, Quantity};
use orders_contract::OrderId;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::ReservationStatus as Status;

/// A reservation with its lines.
#[derive(Debug, Clone)]
pub(crate) struct Reservation {
    pub(crate) id: Uuid,
    pub(crate) order_id: OrderId,
    pub(crate) status: Status,
    pub(crate) expires_at: Option<DateTime<Utc>>,
    /// (product, units).
    pub(crate) lines: Vec<(ProductId, Quantity)>,
}

/// The order's reservation, locked until the transaction ends.
pub(crate) async fn for_order(db: &mut PgConnection, order: OrderId) -> anyhow::Result<Option<Reservation>> {
    let row: Option<(Uuid, Status, Option<DateTime<Utc>>)> =
        sqlx::query_as("SELECT id, status, expires_at FROM reservations WHERE order_id = $1 FOR UPDATE")
            .bind(order.0)
            .fetch_optional(&mut *db)
            .await
            .context("reading a reservation")?;
    let Some((id, status, expires_at)) = row else { return Ok(None) };
    let lines: Vec<(Uuid, i32)> = sqlx::query_as(
        "SELECT product_id, quantity FROM reservation_lines WHERE reservation_id = $1 ORDER BY product_id",
    )
    .bind(id)
    .fetch_all(&mut *db)
    .await
    .context("reading reservation lines")?;
    let lines = super::units_per_product(lines, "units reserved")?;
    Ok(Some(Reservation { id, order_id: order, status, expires_at, lines }))
}

/// Records the order's reservation (held with its lines, or rejected without).
pub(crate) async fn insert(db: &mut PgConnection, reservation: &Reservation, at: DateTime<Utc>) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO reservations (id, order_id, status, expires_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(reservation.id)
    .bind(reservation.order_id.0)
    .bind(reservation.status)
    .bind(reservation.expires_at)
    .bind(at)
    .execute(&mut *db)
    .await
    .context("recording a reservation")?;
    let products: Vec<Uuid> = reservation.lines.iter().map(|l| l.0.into_inner()).collect();
    let quantities: Vec<i32> = reservation.lines.iter().map(|l| l.1.as_i32()).collect();
    sqlx::query(
        "INSERT INTO reservation_lines (reservation_id, product_id, quantity) SELECT $1, * FROM unnest($2::uuid[], $3::int[])",
    )
    .bind(reservation.id)
    .bind(&products)
    .bind(&quantities)
    .execute(db)
    .await
    .context("recording reservation lines")?;
    Ok(())
}

pub(crate) async fn set_status(
    db: &mut PgConnection,
    id: Uuid,
    status: Status,
    at: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE reservations SET status = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(status)
        .bind(at)
        .execute(db)
        .await
        .context("changing a reservation")?;
    Ok(())
}
