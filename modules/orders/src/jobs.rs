//! The orders module's background work: the payment deadline. Enqueued, with the order's
//! move to `awaiting_payment`, to run at `pay_by`; it cancels the order if no payment was
//! captured by then.

use std::sync::Arc;

use orders_contract::OrderId;
use platform::bus::Metadata;
use platform::jobs::{Job, JobContext, JobError, JobHandler};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::SagaInput;
use crate::service::{OrdersService, SagaError};
use crate::store::orders::Cause;

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

/// Runs [`PaymentTimeout`] jobs.
#[derive(Debug, Clone)]
pub(crate) struct PaymentTimeoutHandler(pub(crate) Arc<OrdersService>);

#[async_trait::async_trait]
impl JobHandler<PaymentTimeout> for PaymentTimeoutHandler {
    async fn run(&self, job: PaymentTimeout, ctx: JobContext) -> Result<(), JobError> {
        let service = &self.0;
        let mut tx = service.pool.begin().await.map_err(anyhow::Error::from)?;
        let metadata = ctx.follow_up(&job.metadata, PaymentTimeout::QUEUE_NAME);
        let id = OrderId(job.order_id);
        match service.advance(&mut tx, id, SagaInput::PaymentDeadlinePassed, &Cause::Job(ctx.id), &metadata).await {
            Ok(order) => {
                // A job may start a moment early (its time has second precision): try again.
                if order.status == orders_contract::OrderStatus::AwaitingPayment
                    && order.paying_capture().is_none()
                    && order.pay_by.is_some_and(|pay_by| pay_by > service.now())
                {
                    return Err(JobError::Retry(anyhow::anyhow!("the payment deadline of {id} is not due yet")));
                }
                tx.commit().await.map_err(anyhow::Error::from)?;
                Ok(())
            }
            Err(SagaError::NotFound) => Err(JobError::Abort(anyhow::anyhow!("order {id} does not exist"))),
            Err(SagaError::Transition(error)) => Err(JobError::Abort(error.into())),
            Err(SagaError::Unexpected(error)) => Err(JobError::Retry(error)),
        }
    }
}
