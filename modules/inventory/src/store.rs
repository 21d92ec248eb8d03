//! SQL on schema `inventory`. Every function takes a connection (or a transaction), so a use
//! case decides the transaction and the outbox append and job enqueue join it.

pub(crate) mod products;
pub(crate) mod reservations;
pub(crate) mod stock;

use inventory_contract::{ProductId, Quantity};
use uuid::Uuid;

/// Whether `error` is a unique violation of `constraint` (an index name works too).
pub(crate) fn is_unique_violation(error: &sqlx::Error, constraint: &str) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation() && db.constraint() == Some(constraint))
}

/// Stored (product, units) rows as the domain counts them. A stored count out of a
/// `Quantity`'s range is a broken row, refused with `what` it was.
pub(crate) fn units_per_product(rows: Vec<(Uuid, i32)>, what: &str) -> anyhow::Result<Vec<(ProductId, Quantity)>> {
    rows.into_iter()
        .map(|(product, units)| {
            let units = Quantity::try_from(units).map_err(|why| anyhow::anyhow!("{what} {units}: {why}"))?;
            Ok((ProductId::from(product), units))
        })
        .collect()
}
