//! Moving an order through the saga: load it locked, apply what happened, store the facts,
//! the timeline entry, the events and the payment-deadline job — all in the caller's
//! transaction (a bus handler's, a job's or a request's).

use orders_contract::OrderId;
use orders_contract::events::{
    OrderCancelled, OrderConfirmed, OrderDelivered, OrderRejected, OrderShipped, PaymentRequested, RefundRequested,
};
use platform::bus::{self, Metadata};
use platform::jobs::{self, Job, Schedule};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use super::OrdersService;
use crate::domain::machine::Order;
use crate::domain::{Effect, SagaInput, TransitionError};
use crate::metrics::settlement;
use crate::store::orders::{self, Cause, reason_name};

/// The payment deadline of one order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PaymentTimeout {
    pub(crate) order_id: Uuid,
    /// The metadata of what scheduled it, so the cancellation continues its correlation.
    pub(crate) metadata: Metadata,
}

impl PaymentTimeout {
    pub(crate) const QUEUE_NAME: &'static str = "orders.payment_timeout";
}

impl Job for PaymentTimeout {
    const QUEUE: &'static str = Self::QUEUE_NAME;
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SagaError {
    #[error("no such order")]
    NotFound,
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl OrdersService {
    /// Applies `input` to the order, caused by `cause`; returns the order as it now stands.
    ///
    /// # Errors
    /// [`SagaError::NotFound`], [`SagaError::Transition`] for requests the status does not
    /// allow, database failures.
    #[tracing::instrument(skip_all, fields(order_id = %id, input = ?std::mem::discriminant(&input)), err(level = "info"))]
    pub(crate) async fn advance(
        &self,
        tx: &mut PgConnection,
        id: OrderId,
        input: SagaInput,
        cause: &Cause,
        metadata: &Metadata,
    ) -> Result<Order, SagaError> {
        let now = self.now();
        let mut order = orders::load_for_update(tx, id).await?.ok_or(SagaError::NotFound)?;
        let before = order.status;
        let window = chrono::TimeDelta::from_std(self.config.payment_timeout).map_err(anyhow::Error::from)?;
        let transition = order.apply(input, now, window)?;
        if let Some(because) = transition.unchanged_because {
            tracing::info!(status = order.status.as_str(), because, "order status unchanged");
        }
        orders::save(tx, &order, now).await?;
        if let Some(to) = transition.to {
            let reason = order.cancellation.as_ref().map(|(reason, detail)| match detail {
                Some(detail) => format!("{}: {detail}", reason_name(*reason)),
                None => reason_name(*reason).to_owned(),
            });
            let reason = if to == orders_contract::OrderStatus::Cancelled { reason } else { None };
            orders::record_status(tx, id, now, to, cause, reason.as_deref()).await?;
            tracing::info!(status = to.as_str(), "order moved");
            if let Some(outcome) = settlement(before, to) {
                let placed_at = orders::placed_at(tx, id).await?;
                self.metrics.settled(outcome, (now - placed_at).as_seconds_f64());
            }
        }
        for effect in transition.effects {
            self.carry_out(tx, &order, effect, metadata, now).await?;
        }
        Ok(order)
    }

    async fn carry_out(
        &self,
        tx: &mut PgConnection,
        order: &Order,
        effect: Effect,
        metadata: &Metadata,
        now: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<()> {
        let (order_id, user_id) = (order.id, order.user_id);
        match effect {
            Effect::RequestPayment { pay_by } => {
                let request = PaymentRequested {
                    order_id,
                    user_id,
                    amount: order.total,
                    payment_method: order.payment_method.clone(),
                    pay_by,
                    requested_at: now,
                };
                bus::append(tx, &request, metadata).await?;
                let schedule = Schedule {
                    run_at: Some(pay_by),
                    idempotency_key: Some(format!("{}:{order_id}", PaymentTimeout::QUEUE_NAME)),
                    max_attempts: Some(platform::jobs::DEADLINE_RETRY.max_attempts),
                };
                jobs::enqueue(tx, &PaymentTimeout { order_id: order_id.0, metadata: metadata.clone() }, schedule)
                    .await?;
            }
            Effect::Confirm { payment_id } => {
                let event = OrderConfirmed { order_id, user_id, payment_id, total: order.total, confirmed_at: now };
                bus::append(tx, &event, metadata).await?;
            }
            Effect::Reject { lines } => {
                bus::append(tx, &OrderRejected { order_id, user_id, lines, rejected_at: now }, metadata).await?;
            }
            Effect::Cancel { reason, detail, from } => {
                let event =
                    OrderCancelled { order_id, user_id, reason, detail, cancelled_from: from, cancelled_at: now };
                bus::append(tx, &event, metadata).await?;
            }
            Effect::Refund { payment_id, amount, reason } => {
                let event = RefundRequested { order_id, user_id, payment_id, amount, reason, requested_at: now };
                bus::append(tx, &event, metadata).await?;
            }
            Effect::Ship { carrier, tracking_number } => {
                let event = OrderShipped { order_id, user_id, carrier, tracking_number, shipped_at: now };
                bus::append(tx, &event, metadata).await?;
            }
            Effect::Deliver => {
                bus::append(tx, &OrderDelivered { order_id, user_id, delivered_at: now }, metadata).await?;
            }
        }
        Ok(())
    }
}
