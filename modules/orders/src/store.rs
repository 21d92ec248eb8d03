//! SQL on schema `orders`. Every function takes a connection (or a transaction), so a use case
//! decides the transaction and the outbox append and job enqueue join it.

pub(crate) mod orders;
pub(crate) mod reads;
