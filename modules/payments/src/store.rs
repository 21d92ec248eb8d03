//! SQL on schema `payments`; every function takes the caller's connection, so the use case
//! decides the transaction.

pub(crate) mod ledger;
pub(crate) mod payments;
pub(crate) mod refunds;
pub(crate) mod webhooks;
