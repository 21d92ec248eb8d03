//! The inventory domain: parsed catalogue values and stock adjustments. Stock rules live with
//! the levels they guard (`service::levels`).

mod product;
mod stock;

pub(crate) use product::{ProductDraft, Sku};
pub(crate) use stock::{Adjustment, AdjustmentKind};
