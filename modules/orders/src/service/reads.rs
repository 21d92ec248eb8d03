//! Reading orders for the API, and the requests people make of an order (cancel, ship,
//! deliver), each in a transaction of its own. Handlers reach orders only through here.

use anyhow::Context;
use orders_contract::OrderId;
use platform::bus::Metadata;
use platform::http::{Page, PageRequest};
use uuid::Uuid;

use super::{OrdersService, SagaError};
use crate::domain::SagaInput;
use crate::store::orders::Cause;
use crate::store::reads::{self, FullOrder, ListFilter, ListKey, OrderRow, TimelineEntry};

impl OrdersService {
    /// One order with its lines, timeline and refunds.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) async fn order(&self, id: Uuid) -> anyhow::Result<Option<FullOrder>> {
        // The order, its lines, timeline and refunds as of one moment, in one transaction.
        let mut snapshot = platform::db::read_snapshot(&self.pool).await.context("reading an order")?;
        let order = reads::find(&mut snapshot, id).await?;
        snapshot.commit().await.context("reading an order")?;
        Ok(order)
    }

    /// The customer an order belongs to; `None` for an unknown order.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) async fn order_owner(&self, id: Uuid) -> anyhow::Result<Option<Uuid>> {
        let mut db = self.pool.acquire().await.context("reading an order's customer")?;
        reads::owner(&mut db, id).await
    }

    /// One page of the orders `filter` covers.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) async fn list_orders(
        &self,
        filter: &ListFilter,
        page: &PageRequest<ListKey>,
    ) -> anyhow::Result<Page<OrderRow>> {
        let by_total = page.sort.keys().first().is_some_and(|k| k.field == "total");
        let mut db = self.pool.acquire().await.context("listing orders")?;
        let rows = reads::list(&mut db, filter, page).await?;
        Ok(Page::from_overfetch(rows, page, |row| reads::list_key(row, by_total)))
    }

    /// Timeline entries after `after`, and whether the order is in a final state. The status
    /// is read first: a final status commits with its timeline entry, so the entries read after
    /// it include that entry (or it was sent before, when `after` is past it).
    ///
    /// # Errors
    /// Database failures.
    pub(crate) async fn timeline_since(&self, id: Uuid, after: i64) -> anyhow::Result<(Vec<TimelineEntry>, bool)> {
        let mut db = self.pool.acquire().await.context("reading an order's timeline")?;
        let settled = reads::status(&mut db, id).await?.is_some_and(orders_contract::OrderStatus::is_final);
        let entries = reads::timeline_after(&mut db, id, after).await?;
        Ok((entries, settled))
    }

    /// Applies a person's request (`request_id`) to an order, in a transaction of its own.
    ///
    /// # Errors
    /// [`SagaError::NotFound`], [`SagaError::Transition`], database failures.
    pub(crate) async fn request(
        &self,
        id: OrderId,
        input: SagaInput,
        request_id: &str,
        metadata: &Metadata,
    ) -> Result<(), SagaError> {
        let mut tx = self.pool.begin().await.context("starting an order request")?;
        self.advance(&mut tx, id, input, &Cause::Request(request_id.to_owned()), metadata).await?;
        tx.commit().await.context("committing an order request")?;
        Ok(())
    }
}
