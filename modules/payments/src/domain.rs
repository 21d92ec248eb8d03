//! The payment's state machine and the ledger's arithmetic: pure, unit-tested.

mod ledger;
mod payment;

pub(crate) use ledger::{Balances, EntryKind};
pub(crate) use payment::PaymentStatus;
