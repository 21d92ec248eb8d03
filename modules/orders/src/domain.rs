//! The orders domain: what an order is, the rule that prices it, and the saga's state
//! machine. Pure; the service loads, applies and stores.

mod address;
mod lines;
pub(crate) mod machine;
mod pricing;

pub(crate) use address::AddressInput;
pub(crate) use lines::repeated_products;
pub(crate) use machine::{Effect, Order, SagaInput, TransitionError};
pub(crate) use pricing::{Totals, price};
