//! The payment events orders consumes, versioned; each payload has an insta snapshot. Keyed by
//! order id, so an order's payment events stay in order.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared_kernel::event::EventRef;
use shared_kernel::keyed_event;
use shared_kernel::money::Money;
use uuid::Uuid;

use crate::PaymentId;

/// The customer's money was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentCaptured {
    pub payment_id: PaymentId,
    pub order_id: Uuid,
    pub amount: Money,
    pub captured_at: DateTime<Utc>,
}
keyed_event!(PaymentCaptured, "payments.payment_captured", order_id);

/// Why a payment failed, as far as the gateway said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCode {
    CardDeclined,
    InsufficientFunds,
    ExpiredCard,
    InvalidPaymentMethod,
    /// The gateway refused the request itself (not the card): retrying cannot help. Outages
    /// never fail a payment; it waits for the gateway instead.
    ProcessingError,
}

impl FailureCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CardDeclined => "card_declined",
            Self::InsufficientFunds => "insufficient_funds",
            Self::ExpiredCard => "expired_card",
            Self::InvalidPaymentMethod => "invalid_payment_method",
            Self::ProcessingError => "processing_error",
        }
    }
}

/// The payment failed for good; no money was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentFailed {
    pub payment_id: PaymentId,
    pub order_id: Uuid,
    pub code: FailureCode,
    /// The gateway's words, for support; not for branching.
    pub message: Option<String>,
    pub failed_at: DateTime<Utc>,
}
keyed_event!(PaymentFailed, "payments.payment_failed", order_id);

/// Money went back to the customer: `amount` now, `total_refunded` in all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefunded {
    pub payment_id: PaymentId,
    pub order_id: Uuid,
    pub refund_id: Uuid,
    pub amount: Money,
    pub total_refunded: Money,
    /// Whether everything captured has been refunded.
    pub fully_refunded: bool,
    pub refunded_at: DateTime<Utc>,
}
keyed_event!(PaymentRefunded, "payments.payment_refunded", order_id);

/// The payment events orders consumes.
pub const SAGA_EVENTS: [EventRef; 3] =
    [EventRef::of::<PaymentCaptured>(), EventRef::of::<PaymentFailed>(), EventRef::of::<PaymentRefunded>()];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use shared_kernel::event::wire;
    use shared_kernel::fixtures::{at, eur, order, payment};

    use super::*;

    #[test]
    fn payloads_keep_their_wire_shape() {
        insta::assert_json_snapshot!(
            "payment_captured",
            wire(&PaymentCaptured { payment_id: payment(), order_id: order(), amount: eur(2999), captured_at: at() })
        );
        insta::assert_json_snapshot!(
            "payment_failed",
            wire(&PaymentFailed {
                payment_id: payment(),
                order_id: order(),
                code: FailureCode::CardDeclined,
                message: Some("Your card was declined.".to_owned()),
                failed_at: at(),
            })
        );
        insta::assert_json_snapshot!(
            "payment_refunded",
            wire(&PaymentRefunded {
                payment_id: payment(),
                order_id: order(),
                refund_id: Uuid::from_u128(0x0193_b5f2_8a4e_7c3d_9a51_0000_0000_00dd),
                amount: eur(1000),
                total_refunded: eur(2999),
                fully_refunded: true,
                refunded_at: at(),
            })
        );
    }
}
