//! SQL on schema `users`. Every function takes a connection (or a transaction), so a use case
//! decides the transaction and the outbox append joins it.

pub(crate) mod accounts;
pub(crate) mod action_requests;
pub(crate) mod login_failures;
pub(crate) mod sessions;

/// Whether `error` is a unique violation of `constraint` (an index name works too).
pub(crate) fn is_unique_violation(error: &sqlx::Error, constraint: &str) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation() && db.constraint() == Some(constraint))
}
