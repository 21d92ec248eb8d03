//! SQL on schema `inventory`. Every function takes a connection (or a transaction), so a use
//! case decides the transaction and the outbox append and job enqueue join it.

pub(crate) mod products;
pub(crate) mod reservations;
pub(crate) mod stock;

/// Whether `error` is a unique violation of `constraint` (an index name works too).
pub(crate) fn is_unique_violation(error: &sqlx::Error, constraint: &str) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation() && db.constraint() == Some(constraint))
}
