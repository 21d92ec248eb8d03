//! The events the orders module publishes (`orders.*`), versioned; each payload has an insta
//! snapshot below. docs/saga.md shows when each is appended and who reacts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared_kernel::event::EventRef;
use shared_kernel::ids::{PaymentId, ProductId};
use shared_kernel::keyed_event;
use shared_kernel::money::Money;
use uuid::Uuid;

use crate::{OrderId, OrderLine, OrderStatus, ShippingAddress};

/// A customer placed an order; it is `pending`. Inventory reserves its lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order_id: OrderId,
    pub user_id: Uuid,
    pub lines: Vec<OrderLine>,
    pub subtotal: Money,
    pub shipping: Money,
    pub total: Money,
    pub shipping_address: ShippingAddress,
    pub placed_at: DateTime<Utc>,
}
keyed_event!(OrderPlaced, "orders.order_placed", order_id);

/// Stock is reserved: payments should take `amount` with the customer's payment method. The
/// order waits in `awaiting_payment` until the payment timeout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRequested {
    pub order_id: OrderId,
    pub user_id: Uuid,
    pub amount: Money,
    /// The token of the customer's payment method (a gateway reference, not card data).
    pub payment_method: String,
    /// After this the order is cancelled if no payment was captured.
    pub pay_by: DateTime<Utc>,
    pub requested_at: DateTime<Utc>,
}
keyed_event!(PaymentRequested, "orders.payment_requested", order_id);

/// Payment captured: the order is `confirmed`. Inventory commits the reserved stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderConfirmed {
    pub order_id: OrderId,
    pub user_id: Uuid,
    pub payment_id: PaymentId,
    pub total: Money,
    pub confirmed_at: DateTime<Utc>,
}
keyed_event!(OrderConfirmed, "orders.order_confirmed", order_id);

/// Why a line could not be reserved (copied from inventory's rejection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RejectedLine {
    #[schema(value_type = Uuid)]
    pub product_id: ProductId,
    /// `insufficient_stock`, `unknown_product` or `inactive_product`.
    pub code: String,
    pub requested: u32,
    pub available: u32,
}

/// Stock could not be reserved: the order is `rejected` (final); nothing is held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRejected {
    pub order_id: OrderId,
    pub user_id: Uuid,
    pub lines: Vec<RejectedLine>,
    pub rejected_at: DateTime<Utc>,
}
keyed_event!(OrderRejected, "orders.order_rejected", order_id);

/// Why an order was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CancellationReason {
    CustomerRequest,
    PaymentFailed,
    PaymentTimeout,
    ReservationExpired,
}

/// The order is `cancelled` (final). Inventory releases its reservation, or restocks what it
/// had committed; payments voids a payment still in flight. A refund, when one is due, is a
/// separate [`RefundRequested`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub order_id: OrderId,
    pub user_id: Uuid,
    pub reason: CancellationReason,
    /// E.g. the payment failure code (`card_declined`).
    pub detail: Option<String>,
    /// The status it was cancelled from.
    pub cancelled_from: OrderStatus,
    pub cancelled_at: DateTime<Utc>,
}
keyed_event!(OrderCancelled, "orders.order_cancelled", order_id);

/// Why money goes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundReason {
    /// A paid order was cancelled.
    OrderCancelled,
    /// A payment was captured after the order had been cancelled.
    LateCapture,
    /// A second payment was captured for an order already paid.
    DuplicateCapture,
    /// A capture did not match the order's total (amount or currency); the order still
    /// awaits a payment that does.
    AmountMismatch,
}

/// Payments should refund `amount` of `payment_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequested {
    pub order_id: OrderId,
    pub user_id: Uuid,
    pub payment_id: PaymentId,
    pub amount: Money,
    pub reason: RefundReason,
    pub requested_at: DateTime<Utc>,
}
keyed_event!(RefundRequested, "orders.refund_requested", order_id);

/// An admin handed the order to a carrier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderShipped {
    pub order_id: OrderId,
    pub user_id: Uuid,
    pub carrier: String,
    pub tracking_number: String,
    pub shipped_at: DateTime<Utc>,
}
keyed_event!(OrderShipped, "orders.order_shipped", order_id);

/// The carrier delivered the order (final).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderDelivered {
    pub order_id: OrderId,
    pub user_id: Uuid,
    pub delivered_at: DateTime<Utc>,
}
keyed_event!(OrderDelivered, "orders.order_delivered", order_id);

/// Every event type the orders module publishes, for its manifest and docs/saga.md.
pub const PUBLISHED: [EventRef; 8] = [
    EventRef::of::<OrderPlaced>(),
    EventRef::of::<PaymentRequested>(),
    EventRef::of::<OrderConfirmed>(),
    EventRef::of::<OrderRejected>(),
    EventRef::of::<OrderCancelled>(),
    EventRef::of::<RefundRequested>(),
    EventRef::of::<OrderShipped>(),
    EventRef::of::<OrderDelivered>(),
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use shared_kernel::event::wire;
    use shared_kernel::fixtures::{at, eur, payment, product};
    use shared_kernel::quantity::Quantity;

    use super::*;

    fn order() -> OrderId {
        OrderId(shared_kernel::fixtures::order())
    }

    fn user() -> Uuid {
        Uuid::from_u128(0x0193_b5f2_8a4e_7c3d_9a51_3f0c_2b6d_7e81)
    }

    #[test]
    fn payloads_keep_their_wire_shape() {
        let placed = OrderPlaced {
            order_id: order(),
            user_id: user(),
            lines: vec![OrderLine {
                product_id: product(),
                sku: "MUG-001".to_owned(),
                name: "Enamel mug".to_owned(),
                quantity: Quantity::new(2).unwrap(),
                unit_price: eur(1250),
                line_total: eur(2500),
            }],
            subtotal: eur(2500),
            shipping: eur(499),
            total: eur(2999),
            shipping_address: crate::fixtures::shipping_address(),
            placed_at: at(),
        };
        insta::assert_json_snapshot!("order_placed", wire(&placed));
        insta::assert_json_snapshot!(
            "payment_requested",
            wire(&PaymentRequested {
                order_id: order(),
                user_id: user(),
                amount: eur(2999),
                payment_method: "pm_card_visa".to_owned(),
                pay_by: at() + chrono::TimeDelta::minutes(15),
                requested_at: at(),
            })
        );
        insta::assert_json_snapshot!(
            "order_confirmed",
            wire(&OrderConfirmed {
                order_id: order(),
                user_id: user(),
                payment_id: payment(),
                total: eur(2999),
                confirmed_at: at()
            })
        );
        insta::assert_json_snapshot!(
            "order_rejected",
            wire(&OrderRejected {
                order_id: order(),
                user_id: user(),
                lines: vec![RejectedLine {
                    product_id: product(),
                    code: "insufficient_stock".to_owned(),
                    requested: 2,
                    available: 1
                }],
                rejected_at: at(),
            })
        );
        insta::assert_json_snapshot!(
            "order_cancelled",
            wire(&OrderCancelled {
                order_id: order(),
                user_id: user(),
                reason: CancellationReason::PaymentFailed,
                detail: Some("card_declined".to_owned()),
                cancelled_from: OrderStatus::AwaitingPayment,
                cancelled_at: at(),
            })
        );
        insta::assert_json_snapshot!(
            "refund_requested",
            wire(&RefundRequested {
                order_id: order(),
                user_id: user(),
                payment_id: payment(),
                amount: eur(2999),
                reason: RefundReason::OrderCancelled,
                requested_at: at(),
            })
        );
        insta::assert_json_snapshot!(
            "order_shipped",
            wire(&OrderShipped {
                order_id: order(),
                user_id: user(),
                carrier: "DHL".to_owned(),
                tracking_number: "JD014600006281234567".to_owned(),
                shipped_at: at(),
            })
        );
        insta::assert_json_snapshot!(
            "order_delivered",
            wire(&OrderDelivered { order_id: order(), user_id: user(), delivered_at: at() })
        );
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
    }
}
