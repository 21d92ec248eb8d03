//! The inventory module's subscription to the order saga: reserve when an order is placed,
//! commit when it is confirmed, release or restock when it is cancelled (docs/saga.md).

use std::sync::Arc;

use orders_contract::events::{OrderCancelled, OrderConfirmed, OrderPlaced};
use platform::bus::{Subscription, handler_fn};

use crate::service::InventoryService;

/// Partitions: orders proceed in parallel, each order's events in order.
const PARTITIONS: u16 = 4;

pub(crate) fn all(service: &Arc<InventoryService>) -> Vec<Subscription> {
    let (placed, confirmed, cancelled) = (service.clone(), service.clone(), service.clone());
    let saga = Subscription::new("inventory.orders-saga", "orders")
        .partitions(PARTITIONS)
        .on(handler_fn(move |ctx, event: OrderPlaced| {
            let service = placed.clone();
            Box::pin(async move {
                let metadata = ctx.follow_up();
                service.reserve(ctx.tx, &event, &metadata).await
            })
        }))
        .on(handler_fn(move |ctx, event: OrderConfirmed| {
            let service = confirmed.clone();
            Box::pin(async move {
                let metadata = ctx.follow_up();
                service.commit(ctx.tx, event.order_id, &metadata).await
            })
        }))
        .on(handler_fn(move |ctx, event: OrderCancelled| {
            let service = cancelled.clone();
            Box::pin(async move {
                let metadata = ctx.follow_up();
                service.cancel(ctx.tx, event.order_id, &metadata).await
            })
        }));
    vec![saga]
}
