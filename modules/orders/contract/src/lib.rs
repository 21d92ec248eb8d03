//! The orders module's public face: the order events other modules react to. The order saga
//! they take part in is described in `docs/saga.md`; the events orders consumes are in
//! `inventory-contract` and `payments-contract`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub mod events;
#[cfg(any(test, feature = "testing"))]
pub mod fixtures;

use shared_kernel::ids::ProductId;
use shared_kernel::quantity::Quantity;

/// An order's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Uuid)]
pub struct OrderId(pub Uuid);

/// For a store's row, where the id is read back as its UUID.
impl From<Uuid> for OrderId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl std::fmt::Display for OrderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Where an order stands in the saga (docs/saga.md, "States").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Placed; inventory is reserving its stock.
    Pending,
    /// Stock reserved; payment requested.
    AwaitingPayment,
    /// Paid; to be shipped.
    Confirmed,
    Shipped,
    /// Final.
    Delivered,
    /// Final: the stock could not be reserved.
    Rejected,
    /// Final: cancelled by the customer, a failed or late payment, or an expired reservation.
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [Self; 7] = [
        Self::Pending,
        Self::AwaitingPayment,
        Self::Confirmed,
        Self::Shipped,
        Self::Delivered,
        Self::Rejected,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::AwaitingPayment => "awaiting_payment",
            Self::Confirmed => "confirmed",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == raw)
    }

    /// No transition leaves a final state.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Delivered | Self::Rejected | Self::Cancelled)
    }
}

/// A stored status that names no [`OrderStatus`]: a decode error, never a silent default.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown order status {0:?}")]
pub struct UnknownStatus(pub String);

impl TryFrom<String> for OrderStatus {
    type Error = UnknownStatus;

    fn try_from(raw: String) -> Result<Self, UnknownStatus> {
        Self::parse(&raw).ok_or(UnknownStatus(raw))
    }
}

/// One line of a placed order, priced by inventory when the order was placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderLine {
    #[schema(value_type = Uuid)]
    pub product_id: ProductId,
    pub sku: String,
    pub name: String,
    #[schema(value_type = u32)]
    pub quantity: Quantity,
    pub unit_price: shared_kernel::money::Money,
    /// `unit_price × quantity`.
    pub line_total: shared_kernel::money::Money,
}

/// Where the order goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"name": "Ada Lovelace", "line1": "12 St James's Square", "line2": null, "city": "London", "region": null, "postal_code": "SW1Y 4JH", "country": "GB"}))]
pub struct ShippingAddress {
    pub name: String,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub region: Option<String>,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
}
