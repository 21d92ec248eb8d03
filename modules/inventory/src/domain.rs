//! The inventory domain: parsed catalogue values, stock adjustments, the stock level and its
//! invariant (`level`), and the reservation decision (`reservation`). Pure: the service locks,
//! asks the domain, and stores what it decided.

mod level;
mod product;
mod reservation;
mod stock;

pub(crate) use inventory_contract::Sku;
pub(crate) use level::{LevelChange, LevelError, MovementKind, StockLevel};
pub(crate) use product::ProductDraft;
pub(crate) use reservation::{Decision, Expiry, GiveBack, Status as ReservationStatus, decide, wanted};
pub(crate) use stock::{Adjustment, AdjustmentKind};
