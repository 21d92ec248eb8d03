//! The payments module's subscription to the order saga (docs/saga.md): a payment for each
//! payment request, a void when an order is cancelled before its capture, a refund when
//! orders asks. Handlers only write payments' own rows and enqueue jobs; the gateway is
//! called by the jobs.

use std::sync::Arc;

use orders_contract::events::{OrderCancelled, PaymentRequested, RefundRequested};
use platform::bus::{Subscription, handler_fn};

use crate::service::PaymentsService;

/// Partitions: orders proceed in parallel, each order's events in order.
const PARTITIONS: u16 = 4;

pub(crate) fn all(service: &Arc<PaymentsService>) -> Vec<Subscription> {
    let (requested, cancelled, refund) = (service.clone(), service.clone(), service.clone());
    let saga = Subscription::new("payments.orders-saga", "orders")
        .partitions(PARTITIONS)
        .on(handler_fn(move |ctx, event: PaymentRequested| {
            let service = requested.clone();
            Box::pin(async move {
                let metadata = ctx.follow_up();
                service.request_payment(ctx.tx, &event, &metadata).await
            })
        }))
        .on(handler_fn(move |ctx, event: OrderCancelled| {
            let service = cancelled.clone();
            Box::pin(async move { service.order_cancelled(ctx.tx, event.order_id).await })
        }))
        .on(handler_fn(move |ctx, event: RefundRequested| {
            let service = refund.clone();
            Box::pin(async move {
                let metadata = ctx.follow_up();
                let event_id = ctx.envelope.id;
                service.refund_for_order(ctx.tx, &event, event_id, &metadata).await
            })
        }));
    vec![saga]
}
