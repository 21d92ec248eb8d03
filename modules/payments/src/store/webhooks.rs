//! Webhook calls already applied, so a replay is recognised.

use anyhow::Context;
use chrono::{DateTime, Utc};
use payments_contract::PaymentId;
use sqlx::PgConnection;

/// Records the gateway's event; false if it was recorded before (a replay).
pub(crate) async fn remember(
    db: &mut PgConnection,
    id: &str,
    event_type: &str,
    payment_id: Option<PaymentId>,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO webhook_events (id, event_type, payment_id, received_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(event_type)
    .bind(payment_id.map(PaymentId::into_inner))
    .bind(now)
    .execute(db)
    .await
    .context("remembering a webhook event")?
    .rows_affected();
    Ok(inserted == 1)
}

/// Forgets events received before `before`; returns how many. Their signatures are long stale,
/// so a replay of one is refused by its timestamp anyway.
pub(crate) async fn forget_before(db: &mut PgConnection, before: DateTime<Utc>) -> anyhow::Result<u64> {
    let deleted = sqlx::query("DELETE FROM webhook_events WHERE received_at < $1")
        .bind(before)
        .execute(db)
        .await
        .context("forgetting old webhook events")?
        .rows_affected();
    Ok(deleted)
}
