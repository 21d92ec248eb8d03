//! The inventory module's public face: the [`InventoryApi`] port orders calls to price an
//! order, and the inventory events of the order saga ([`events`]; docs/saga.md).

use serde::{Deserialize, Serialize};
use shared_kernel::money::{Currency, Money};
use shared_kernel::port::CallContext;
use utoipa::ToSchema;
use uuid::Uuid;

#[cfg(feature = "client")]
pub mod client;
pub mod events;
pub mod internal_api;

/// The port's name, as manifests declare it (`ports_used`).
pub const PORT: &str = "InventoryApi";

/// The modules that may call the port from another process: those whose manifest declares
/// it. The internal API refuses any other caller; the architecture test keeps this list and
/// the manifests in step.
pub const CALLERS: &[&str] = &["orders"];

/// How a line names a product: by id or by SKU.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProductRef {
    Id(Uuid),
    Sku(String),
}

/// One line to price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuoteLine {
    pub product: ProductRef,
    pub quantity: u32,
}

/// A priced line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotedLine {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub quantity: u32,
    pub unit_price: Money,
    /// Units available now (on hand minus reserved). Advisory: a quote does not refuse a
    /// line for stock; the reservation decides, so a shortfall rejects the placed order with
    /// its reasons (docs/saga.md).
    pub available: u32,
}

/// Why a line cannot be ordered as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LineProblemKind {
    /// No product with that id or SKU.
    UnknownProduct,
    /// The product is archived or not for sale.
    InactiveProduct,
    /// Priced in another currency than the rest of the order.
    CurrencyMismatch,
}

/// A problem with one line, by its index in the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LineProblem {
    pub line: usize,
    pub kind: LineProblemKind,
}

/// The answer to a quote: every line priced, in one currency, or the problems. An order can
/// be placed only from a quote without problems.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Quote {
    /// `None` when no line could be priced.
    pub currency: Option<Currency>,
    /// Priced lines, in request order (lines with a problem may be missing).
    pub lines: Vec<QuotedLine>,
    pub problems: Vec<LineProblem>,
}

/// Why the inventory port failed. Transport failures are cases of their own, so callers
/// handle them the same way whatever the topology.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("the inventory module is unavailable: {0}")]
    Unavailable(String),
    #[error("the inventory module did not answer before the deadline")]
    Timeout,
    #[error("the inventory module failed: {0}")]
    Unexpected(String),
}

/// The inventory module's synchronous port.
#[async_trait::async_trait]
pub trait InventoryApi: Send + Sync + std::fmt::Debug {
    /// Prices `lines` at current prices and says, per line, what stands in the way.
    ///
    /// # Errors
    /// Transport failures only; problems with lines are part of the [`Quote`].
    async fn quote(&self, ctx: &CallContext, lines: &[QuoteLine]) -> Result<Quote, InventoryError>;
}
