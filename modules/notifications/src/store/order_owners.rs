//! Who placed each order: payments' events name the order, not the customer.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// Remembers that `user` placed `order` (again is harmless).
pub(crate) async fn record(db: &mut PgConnection, order: Uuid, user: Uuid, at: DateTime<Utc>) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO order_owners (order_id, user_id, recorded_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(order)
        .bind(user)
        .bind(at)
        .execute(db)
        .await
        .context("recording an order's owner")?;
    Ok(())
}

pub(crate) async fn find(db: &mut PgConnection, order: Uuid) -> anyhow::Result<Option<Uuid>> {
    sqlx::query_scalar("SELECT user_id FROM order_owners WHERE order_id = $1")
        .bind(order)
        .fetch_optional(db)
        .await
        .context("reading an order's owner")
}
