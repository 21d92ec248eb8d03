//! The inventory port over HTTP: the paths and bodies of the internal API
//! (`/internal/inventory/v1`), shared by the server in the inventory module and the
//! [`client`](crate::client), so the two cannot drift apart.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::QuoteLine;

/// `POST`: price lines ([`crate::InventoryApi::quote`]); answers a [`crate::Quote`].
pub const QUOTE: &str = "/quote";

/// The body of [`QUOTE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuoteRequest {
    pub lines: Vec<QuoteLine>,
}
