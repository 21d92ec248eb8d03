//! The orders use cases: placing an order, moving it through the saga (on events, jobs and
//! requests), and reading orders.

mod place_order;
mod reads;
mod saga;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use inventory_contract::InventoryApi;
use platform::clock::Clock;
use sqlx::PgPool;

pub(crate) use place_order::{LineRequest, PlaceOrder, PlaceOrderError, Placed};
pub(crate) use saga::{PaymentTimeout, SagaError};

/// The read models handlers render (rows as the store reads them).
pub(crate) use crate::store::reads::{FullOrder, ListFilter, ListKey, OrderRow, SORTABLE, TimelineEntry};

use crate::OrdersConfig;
use crate::metrics::SagaMetrics;

/// Everything the use cases share.
#[derive(Debug)]
pub(crate) struct OrdersService {
    pub(crate) pool: PgPool,
    pub(crate) inventory: Arc<dyn InventoryApi>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: OrdersConfig,
    pub(crate) metrics: SagaMetrics,
}

impl OrdersService {
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}
