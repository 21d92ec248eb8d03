//! SQL on schema `notifications`. Every function takes a connection (or a transaction), so a
//! use case decides the transaction and the job enqueue joins it.

pub(crate) mod endpoints;
pub(crate) mod notifications;
pub(crate) mod order_owners;
