//! The orders module's subscriptions: inventory's and payments' saga events, each turned into
//! a [`SagaInput`] for its order and applied in the handler's transaction (docs/saga.md).

use std::sync::Arc;

use inventory_contract::events::{ReservationExpired, StockRejected, StockReserved};
use orders_contract::OrderId;
use orders_contract::events::RejectedLine;
use payments_contract::events::{PaymentCaptured, PaymentFailed, PaymentRefunded};
use platform::bus::{Event, Handler, HandlerContext, Subscription};
use uuid::Uuid;

use crate::domain::SagaInput;
use crate::service::{OrdersService, SagaError};
use crate::store::orders::Cause;

/// Partitions per subscription: orders proceed in parallel, each order's events in order.
const PARTITIONS: u16 = 4;

pub(crate) fn all(service: &Arc<OrdersService>) -> Vec<Subscription> {
    let inventory = Subscription::new("orders.inventory-saga", "inventory")
        .partitions(PARTITIONS)
        .on(Saga::new(service, |e: StockReserved| {
            (e.order_id, SagaInput::StockReserved { reservation_id: e.reservation_id })
        }))
        .on(Saga::new(service, |e: StockRejected| {
            let lines = e
                .lines
                .into_iter()
                .map(|l| RejectedLine {
                    product_id: l.product_id,
                    code: l.code.as_str().to_owned(),
                    requested: l.requested,
                    available: l.available,
                })
                .collect();
            (e.order_id, SagaInput::StockRejected { lines })
        }))
        .on(Saga::new(service, |e: ReservationExpired| {
            (e.order_id, SagaInput::ReservationExpired { reservation_id: e.reservation_id })
        }));
    let payments = Subscription::new("orders.payments-saga", "payments")
        .partitions(PARTITIONS)
        .on(Saga::new(service, |e: PaymentCaptured| {
            (e.order_id, SagaInput::PaymentCaptured { payment_id: e.payment_id, amount: e.amount })
        }))
        .on(Saga::new(service, |e: PaymentFailed| {
            (e.order_id, SagaInput::PaymentFailed { payment_id: e.payment_id, code: e.code.as_str().to_owned() })
        }))
        .on(Saga::new(service, |e: PaymentRefunded| {
            (
                e.order_id,
                SagaInput::PaymentRefunded { payment_id: e.payment_id, total_refunded: e.total_refunded.amount },
            )
        }));
    vec![inventory, payments]
}

/// Applies one event type to the order it names.
struct Saga<F> {
    service: Arc<OrdersService>,
    input_of: F,
}

impl<F> Saga<F> {
    fn new(service: &Arc<OrdersService>, input_of: F) -> Self {
        Self { service: service.clone(), input_of }
    }
}

#[async_trait::async_trait]
impl<E, F> Handler<E> for Saga<F>
where
    E: Event,
    F: Fn(E) -> (Uuid, SagaInput) + Send + Sync + 'static,
{
    async fn handle(&self, ctx: &mut HandlerContext<'_>, event: E) -> anyhow::Result<()> {
        let (order, input) = (self.input_of)(event);
        let cause = Cause::Event(ctx.envelope.id);
        let metadata = ctx.follow_up();
        match self.service.advance(ctx.tx, OrderId(order), input, &cause, &metadata).await {
            Ok(_) => Ok(()),
            // Not ours (another system's order id): nothing to do, and retrying will not help.
            Err(SagaError::NotFound) => {
                tracing::warn!(order_id = %order, event_type = E::TYPE, "event for an unknown order ignored");
                Ok(())
            }
            Err(SagaError::Transition(error)) => Err(error.into()),
            Err(SagaError::Unexpected(error)) => Err(error),
        }
    }
}
