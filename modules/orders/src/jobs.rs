//! The orders module's background work: the payment deadline. Enqueued, with the order's
//! move to `awaiting_payment`, to run at `pay_by`; it cancels the order if no payment was
//! captured by then. The payload belongs to the use case that enqueues it
//! (`service::saga`); this file only runs it, so the dependency goes one way: jobs → service.

use std::sync::Arc;

use orders_contract::OrderId;
use platform::jobs::{JobContext, JobError, JobHandler};

use crate::domain::SagaInput;
use crate::service::{OrdersService, PaymentTimeout, SagaError};
use crate::store::orders::Cause;

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
