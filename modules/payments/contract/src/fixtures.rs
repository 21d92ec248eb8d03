//! Payment events as payments appends them, for other modules' tests (feature `testing`),
//! beside `shared_kernel::fixtures`: one shape, written once, for every module that reacts to
//! payments.

use chrono::Utc;
use uuid::Uuid;

use crate::PaymentId;
use crate::events::{FailureCode, PaymentFailed};

/// A new payment of `order`, declined now: the card was refused.
#[must_use]
pub fn declined(order: Uuid) -> PaymentFailed {
    PaymentFailed {
        payment_id: PaymentId::new(),
        order_id: order,
        code: FailureCode::CardDeclined,
        message: Some("Your card was declined.".to_owned()),
        failed_at: Utc::now(),
    }
}
