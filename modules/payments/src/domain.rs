//! The payment's state machine, a refund's status and the ledger's arithmetic: pure,
//! unit-tested.

mod ledger;
mod payment;
mod refund;

pub(crate) use ledger::{Balances, EntryKind};
pub(crate) use payment::PaymentStatus;
pub(crate) use refund::RefundStatus;
