//! The inventory module's public face: the [`InventoryApi`] port orders calls to price an
//! order, and the inventory events of the order saga ([`events`]; docs/saga.md).

use serde::{Deserialize, Serialize};
use shared_kernel::money::{Currency, Money};
use shared_kernel::port::CallContext;
use utoipa::ToSchema;

#[cfg(feature = "client")]
pub mod client;
pub mod events;
pub mod internal_api;

pub use shared_kernel::ids::ProductId;
pub use shared_kernel::quantity::Quantity;

/// The port's name, as manifests declare it (`ports_used`).
pub const PORT: &str = "InventoryApi";

/// The modules that may call the port from another process: those whose manifest declares
/// it. The internal API refuses any other caller; the architecture test keeps this list and
/// the manifests in step.
pub const CALLERS: &[&str] = &["orders"];

/// A stock-keeping unit: 1 to 64 of `A-Z 0-9 . _ -`, starting with a letter or digit;
/// compared upper-cased. Parsed once, where it enters (a request body, a port call); inside,
/// the type is the proof. On the wire it is the plain string, and a string that does not parse
/// is refused when it is read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "MUG-001")]
pub struct Sku(String);

impl Sku {
    /// Trims and upper-cases `raw`, then checks it.
    ///
    /// # Errors
    /// A sentence saying why the value is not a SKU.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let sku = raw.trim().to_uppercase();
        let valid_start = sku.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        let valid_rest =
            sku.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
        if sku.is_empty() || sku.len() > 64 || !valid_start || !valid_rest {
            return Err(
                "must be 1 to 64 letters, digits, dots, underscores or hyphens, starting with a letter or digit",
            );
        }
        Ok(Self(sku))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sku {
    type Error = &'static str;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<Sku> for String {
    fn from(sku: Sku) -> Self {
        sku.0
    }
}

impl std::fmt::Display for Sku {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a line names a product: by id or by SKU.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProductRef {
    Id(ProductId),
    Sku(Sku),
}

/// One line to price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuoteLine {
    pub product: ProductRef,
    #[schema(value_type = u32)]
    pub quantity: Quantity,
}

/// A priced line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotedLine {
    #[schema(value_type = Uuid)]
    pub product_id: ProductId,
    pub sku: String,
    pub name: String,
    #[schema(value_type = u32)]
    pub quantity: Quantity,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus_are_upper_cased_and_checked() {
        assert_eq!(Sku::parse(" mug-001 ").map(|s| s.as_str().to_owned()), Ok("MUG-001".to_owned()));
        for bad in ["", "-MUG", "MUG 001", "MÜG", "MUG\u{0}1", &"X".repeat(65)] {
            assert!(Sku::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_sku_on_the_wire_is_its_string_and_a_bad_one_is_refused_when_read() {
        let line = ProductRef::Sku(Sku::parse("mug-001").unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(serde_json::to_value(&line).ok(), Some(serde_json::json!({"sku": "MUG-001"})));
        assert!(serde_json::from_value::<ProductRef>(serde_json::json!({"sku": "MUG 001"})).is_err());
    }
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
