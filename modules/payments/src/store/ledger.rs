//! The ledger: one immutable entry per money movement (the table refuses updates and
//! deletes, and a movement recorded twice).

use anyhow::Context;
use chrono::{DateTime, Utc};
use payments_contract::PaymentId;
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{Balances, EntryKind};

/// One movement.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub(crate) struct Entry {
    pub(crate) id: Uuid,
    #[schema(value_type = EntryKind)]
    pub(crate) kind: String,
    /// Minor units of the payment's currency; always positive (the kind says which way).
    pub(crate) amount: i64,
    pub(crate) currency: String,
    /// The refund this entry records, for `refund` entries.
    pub(crate) refund_id: Option<Uuid>,
    /// The gateway's id of the movement.
    pub(crate) gateway_reference: String,
    pub(crate) recorded_at: DateTime<Utc>,
}

/// Records a movement.
#[expect(clippy::too_many_arguments, reason = "one column each")]
pub(crate) async fn record(
    db: &mut PgConnection,
    payment_id: PaymentId,
    kind: EntryKind,
    amount: i64,
    currency: &str,
    refund_id: Option<Uuid>,
    gateway_reference: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO ledger_entries (id, payment_id, kind, amount, currency, refund_id, gateway_reference, recorded_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(Uuid::now_v7())
    .bind(payment_id.into_inner())
    .bind(kind.as_str())
    .bind(amount)
    .bind(currency)
    .bind(refund_id)
    .bind(gateway_reference)
    .bind(now)
    .execute(db)
    .await
    .with_context(|| format!("recording a {} in the ledger", kind.as_str()))?;
    Ok(())
}

/// A payment's entries, oldest first.
pub(crate) async fn entries(db: &mut PgConnection, payment_id: PaymentId) -> anyhow::Result<Vec<Entry>> {
    sqlx::query_as(
        "SELECT id, kind, amount, currency, refund_id, gateway_reference, recorded_at
           FROM ledger_entries WHERE payment_id = $1 ORDER BY recorded_at, id",
    )
    .bind(payment_id.into_inner())
    .fetch_all(db)
    .await
    .context("reading a payment's ledger")
}

/// The balances the entries add up to.
pub(crate) fn balances(entries: &[Entry]) -> anyhow::Result<Balances> {
    let movements = entries
        .iter()
        .map(|entry| {
            EntryKind::parse(&entry.kind)
                .map(|kind| (kind, entry.amount))
                .with_context(|| format!("unknown ledger entry kind {:?}", entry.kind))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Balances::from_entries(movements))
}
