//! The payments module's background work. Every gateway call runs in one of these jobs,
//! never in a bus handler: authorize, capture, void, refund, and the recurring
//! reconciliation. Each job is enqueued in the transaction that asks for it, and each gateway
//! operation carries an idempotency key derived from the payment (or refund), so a job run
//! again never moves money again.

use std::sync::Arc;
use std::time::Duration;

use platform::jobs::{Job, JobContext, JobError, JobHandler, JobQueue, Schedule};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::service::PaymentsService;

/// Authorize a pending payment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Authorize {
    pub(crate) payment_id: Uuid,
}

impl Job for Authorize {
    const QUEUE: &'static str = "payments.authorize";
}

/// Capture an authorized payment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Capture {
    pub(crate) payment_id: Uuid,
}

impl Job for Capture {
    const QUEUE: &'static str = "payments.capture";
}

/// Release a payment whose order was cancelled before the capture.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Void {
    pub(crate) payment_id: Uuid,
}

impl Job for Void {
    const QUEUE: &'static str = "payments.void";
}

/// Release an authorization the gateway holds for a payment that is already over.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Release {
    pub(crate) payment_id: Uuid,
    /// The gateway's reference of the authorization.
    pub(crate) reference: String,
}

impl Job for Release {
    const QUEUE: &'static str = "payments.release";
}

/// Carry out a refund.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Refund {
    pub(crate) refund_id: Uuid,
}

impl Job for Refund {
    const QUEUE: &'static str = "payments.refund";
}

/// Re-query payments stuck in pending or authorized, and settle them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Reconcile {}

impl Job for Reconcile {
    const QUEUE: &'static str = "payments.reconcile";
}

impl PaymentsService {
    /// How a gateway job for `subject` is scheduled: now, keyed so that asking twice enqueues
    /// once, with the configured attempts. `round` tells apart later rounds asked by
    /// reconciliation.
    pub(crate) fn schedule<J: Job>(&self, subject: Uuid, round: Option<&str>) -> Schedule {
        let key = match round {
            None => format!("{}:{subject}", J::QUEUE),
            Some(round) => format!("{}:{subject}:{round}", J::QUEUE),
        };
        Schedule::now().idempotency_key(key).max_attempts(self.config.job_attempts)
    }
}

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
