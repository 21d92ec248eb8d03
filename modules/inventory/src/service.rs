//! The inventory use cases: the catalogue, stock adjustments, reservations for orders, and
//! the quote port; one file each.

mod catalog;
mod levels;
mod quote;
mod reservations;
mod stock;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use platform::clock::Clock;
use sqlx::PgPool;

pub(crate) use catalog::{CatalogError, IfMatch, NewProductRequest, ProductPatch};
pub(crate) use levels::{StockError, Why, apply as apply_level};
pub(crate) use reservations::ReservationExpiry;
pub(crate) use stock::{Adjusted, AdjustmentError};

/// The read models handlers render (rows as the store reads them).
pub(crate) use crate::store::products::{ListFilter, ListKey, ProductRow, SORTABLE, sort_of};
pub(crate) use crate::store::stock::{MOVEMENTS_SORTABLE, MovementKey, MovementRow};

use crate::InventoryConfig;

/// Everything the use cases share.
#[derive(Debug)]
pub(crate) struct InventoryService {
    pub(crate) pool: PgPool,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: InventoryConfig,
}

impl InventoryService {
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}
