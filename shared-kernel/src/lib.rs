//! The shared kernel: the few types every contract and every module's domain code speak,
//! with nothing heavy behind them (no database, no HTTP server, no runtime), so a contract
//! crate stays light enough to compile into any process that calls its module.
//!
//! - [`ids`]: [`ProductId`](ids::ProductId) and [`PaymentId`](ids::PaymentId), ids several
//!   contracts carry; [`quantity`]: [`Quantity`](quantity::Quantity), a positive count of units.
//! - `fixtures` (feature `testing`): fixed ids, instant and amounts for payload snapshots.
//! - [`money`]: [`Money`](money::Money) and [`Currency`](money::Currency), integer minor units.
//! - [`port`]: the [`CallContext`](port::CallContext) of every synchronous call between modules.
//! - [`event`]: the [`Event`](event::Event) contract, [`Metadata`](event::Metadata),
//!   [`keyed_event!`] and [`wire`](event::wire) for payload snapshots.
//! - [`Role`] and [`FieldError`]: who may act, and what was wrong with one field.
//! - [`access`]: [`AccessChanged`](access::AccessChanged), what a user's tokens may still carry
//!   (published by users, applied by every token verifier).

pub mod access;
pub mod event;
#[cfg(feature = "testing")]
pub mod fixtures;
pub mod ids;
pub mod money;
pub mod port;
pub mod quantity;

use serde::{Deserialize, Serialize};

// What a person may do: every account is a customer; admins run the shop. (A plain comment:
// a doc comment would change the schema in the OpenAPI document.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Customer,
    Admin,
}

/// One failed field of a request body, query or path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Path to the field, e.g. `lines[0].quantity`.
    pub field: String,
    pub code: String,
    pub message: String,
}
