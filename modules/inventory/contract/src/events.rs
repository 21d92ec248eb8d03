//! The inventory events of the order saga, versioned; each payload has an insta snapshot.
//! Keyed by order id, so an order's events stay in order.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared_kernel::event::{Event, EventRef};
use shared_kernel::keyed_event;
use uuid::Uuid;

use crate::{ProductId, Quantity};

/// Units held for one product of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservedLine {
    pub product_id: ProductId,
    pub quantity: Quantity,
}

/// Every line of an order is reserved (all or nothing) until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReserved {
    pub order_id: Uuid,
    pub reservation_id: Uuid,
    pub lines: Vec<ReservedLine>,
    pub expires_at: DateTime<Utc>,
    pub reserved_at: DateTime<Utc>,
}
keyed_event!(StockReserved, "inventory.stock_reserved", order_id);

/// Why a line could not be reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionCode {
    InsufficientStock,
    UnknownProduct,
    InactiveProduct,
}

impl RejectionCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InsufficientStock => "insufficient_stock",
            Self::UnknownProduct => "unknown_product",
            Self::InactiveProduct => "inactive_product",
        }
    }
}

/// One line that could not be reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedLine {
    pub product_id: ProductId,
    pub code: RejectionCode,
    pub requested: u32,
    pub available: u32,
}

/// The order's stock could not be reserved; nothing is held for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockRejected {
    pub order_id: Uuid,
    pub lines: Vec<RejectedLine>,
    pub rejected_at: DateTime<Utc>,
}
keyed_event!(StockRejected, "inventory.stock_rejected", order_id);

/// A reservation reached its time-to-live before the order was confirmed; its units are free
/// again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationExpired {
    pub order_id: Uuid,
    pub reservation_id: Uuid,
    pub expired_at: DateTime<Utc>,
}
keyed_event!(ReservationExpired, "inventory.reservation_expired", order_id);

/// A product's available units fell to its low-stock threshold. Sent once per crossing:
/// again only after stock rose above the threshold. Keyed by product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LowStock {
    pub product_id: ProductId,
    pub sku: String,
    pub name: String,
    pub available: u32,
    pub threshold: u32,
    pub at: DateTime<Utc>,
}

impl Event for LowStock {
    const TYPE: &'static str = "inventory.low_stock";
    const VERSION: u32 = 1;
    fn aggregate_key(&self) -> String {
        self.product_id.to_string()
    }
}

/// The inventory events orders consumes.
pub const SAGA_EVENTS: [EventRef; 3] =
    [EventRef::of::<StockReserved>(), EventRef::of::<StockRejected>(), EventRef::of::<ReservationExpired>()];

/// Every event type the inventory module publishes.
pub const PUBLISHED: [EventRef; 4] = [
    EventRef::of::<StockReserved>(),
    EventRef::of::<StockRejected>(),
    EventRef::of::<ReservationExpired>(),
    EventRef::of::<LowStock>(),
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use shared_kernel::event::wire;
    use shared_kernel::fixtures::{at, order, product};

    use super::*;

    fn reservation() -> Uuid {
        Uuid::from_u128(0x0193_b5f2_8a4e_7c3d_9a51_0000_0000_00cc)
    }

    #[test]
    fn payloads_keep_their_wire_shape() {
        insta::assert_json_snapshot!(
            "stock_reserved",
            wire(&StockReserved {
                order_id: order(),
                reservation_id: reservation(),
                lines: vec![ReservedLine { product_id: product(), quantity: Quantity::new(2).unwrap() }],
                expires_at: at() + chrono::TimeDelta::minutes(30),
                reserved_at: at(),
            })
        );
        insta::assert_json_snapshot!(
            "stock_rejected",
            wire(&StockRejected {
                order_id: order(),
                lines: vec![RejectedLine {
                    product_id: product(),
                    code: RejectionCode::InsufficientStock,
                    requested: 2,
                    available: 1
                }],
                rejected_at: at(),
            })
        );
        insta::assert_json_snapshot!(
            "low_stock",
            wire(&LowStock {
                product_id: product(),
                sku: "MUG-001".to_owned(),
                name: "Enamel mug".to_owned(),
                available: 3,
                threshold: 5,
                at: at(),
            })
        );
        insta::assert_json_snapshot!(
            "reservation_expired",
            wire(&ReservationExpired { order_id: order(), reservation_id: reservation(), expired_at: at() })
        );
    }

    #[test]
    fn product_references_name_their_kind() {
        let by_sku = serde_json::to_value(crate::ProductRef::Sku(crate::Sku::parse("MUG-001").unwrap())).unwrap();
        assert_eq!(by_sku, serde_json::json!({"sku": "MUG-001"}));
    }
}
