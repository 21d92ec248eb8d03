//! Fixed values for event-payload snapshots and module tests (feature `testing`): the same
//! order, product and payment ids and the same instant in every contract's snapshots, so a
//! payload that names them reads the same wherever it is pinned.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::ids::{PaymentId, ProductId};
use crate::money::{Currency, Money};

/// The order every snapshot speaks of (orders wraps it in its `OrderId`).
#[must_use]
pub fn order() -> Uuid {
    Uuid::from_u128(0x0193_b5f2_8a4e_7c3d_9a51_0000_0000_0001)
}

/// The product every snapshot speaks of.
#[must_use]
pub fn product() -> ProductId {
    ProductId::from(Uuid::from_u128(0x0193_b5f2_8a4e_7c3d_9a51_0000_0000_00aa))
}

/// The payment every snapshot speaks of.
#[must_use]
pub fn payment() -> PaymentId {
    PaymentId::from(Uuid::from_u128(0x0193_b5f2_8a4e_7c3d_9a51_0000_0000_00bb))
}

/// 2026-11-21 09:30:00 UTC.
#[must_use]
pub fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_795_253_400, 0).unwrap_or_default()
}

/// `amount` cents of euros.
#[must_use]
pub fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::parse("EUR").unwrap_or_else(|e| panic!("{e}")))
}
