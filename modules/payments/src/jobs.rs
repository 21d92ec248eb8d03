//! The payments module's background work. Every gateway call runs in one of these jobs,
//! never in a bus handler: authorize, capture, void, refund, and the recurring
//! reconciliation. Each job is enqueued in the transaction that asks for it, and each gateway
//! operation carries an idempotency key derived from the payment (or refund), so a job run
//! again never moves money again. The payloads belong to the use cases that enqueue them
//! (`service/queued.rs`); this file only runs them, so the dependency goes jobs → service.

use std::sync::Arc;
use std::time::Duration;

use platform::jobs::{JobContext, JobError, JobHandler, JobQueue};

use crate::service::{Authorize, Capture, PaymentsService, Reconcile, Refund, Release, Void};

/// Runs the gateway jobs with the service.
#[derive(Debug, Clone)]
pub(crate) struct Runner(pub(crate) Arc<PaymentsService>);

#[async_trait::async_trait]
impl JobHandler<Authorize> for Runner {
    async fn run(&self, job: Authorize, ctx: JobContext) -> Result<(), JobError> {
        self.0.authorize(job.payment_id, &ctx).await
    }
}

#[async_trait::async_trait]
impl JobHandler<Capture> for Runner {
    async fn run(&self, job: Capture, ctx: JobContext) -> Result<(), JobError> {
        self.0.capture(job.payment_id, &ctx).await
    }
}

#[async_trait::async_trait]
impl JobHandler<Void> for Runner {
    async fn run(&self, job: Void, ctx: JobContext) -> Result<(), JobError> {
        self.0.void(job.payment_id, &ctx).await
    }
}

#[async_trait::async_trait]
impl JobHandler<Release> for Runner {
    async fn run(&self, job: Release, ctx: JobContext) -> Result<(), JobError> {
        self.0.release(job.payment_id, &job.reference, &ctx).await
    }
}

#[async_trait::async_trait]
impl JobHandler<Refund> for Runner {
    async fn run(&self, job: Refund, ctx: JobContext) -> Result<(), JobError> {
        self.0.refund(job.refund_id, &ctx).await
    }
}

#[async_trait::async_trait]
impl JobHandler<Reconcile> for Runner {
    async fn run(&self, _job: Reconcile, ctx: JobContext) -> Result<(), JobError> {
        self.0.reconcile(&ctx).await.map(|_| ()).map_err(JobError::Retry)
    }
}

/// Authorizations and captures running at once per process. A gateway call is mostly
/// waiting, with no database connection held meanwhile, so more than the runtime's default
/// (4) keep the gateway's latency from capping throughput; each still takes a connection
/// briefly before and after its call.
const GATEWAY_CONCURRENCY: usize = 16;

/// The module's queues.
pub(crate) fn queues(service: &Arc<PaymentsService>) -> Vec<JobQueue> {
    let runner = Runner(service.clone());
    let retry = platform::bus::RetryPolicy {
        max_attempts: service.config.job_attempts,
        base_delay: service.config.retry_base,
        max_delay: service.config.retry_max,
    };
    let every = service.config.reconcile_every.max(Duration::from_secs(1));
    vec![
        JobQueue::new::<Authorize>(runner.clone()).retry(retry).concurrency(GATEWAY_CONCURRENCY),
        JobQueue::new::<Capture>(runner.clone()).retry(retry).concurrency(GATEWAY_CONCURRENCY),
        JobQueue::new::<Void>(runner.clone()).retry(retry),
        JobQueue::new::<Release>(runner.clone()).retry(retry),
        JobQueue::new::<Refund>(runner.clone()).retry(retry),
        JobQueue::recurring(runner, every, Reconcile {}).retry(retry).concurrency(1),
    ]
}
