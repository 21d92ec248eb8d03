//! The payments module's public face: the payment events of the order saga ([`events`];
//! docs/saga.md). Payments reacts to `orders.payment_requested` and
//! `orders.refund_requested`.

pub mod events;
#[cfg(any(test, feature = "testing"))]
pub mod fixtures;

pub use shared_kernel::ids::PaymentId;
