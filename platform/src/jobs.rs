//! Jobs (DESIGN §4): work that leaves the database — mail, the payment gateway, webhooks,
//! scheduled sweeps — run by apalis on its PostgreSQL storage (schema `apalis`, ADR 0010).
//!
//! - **Enqueue** with [`enqueue`] inside the transaction of the state change that asks for
//!   the job, on the module's own connection: the job exists exactly when its cause commits.
//! - **Handle** with a [`JobHandler`], registered as a [`JobQueue`] from `Module::jobs`; the
//!   app runs every hosted module's queues in one [`JobsRuntime`] per process. Replicas
//!   share the work: each job is claimed by one worker (`FOR UPDATE SKIP LOCKED`).
//! - **Failures** are retried in process with the queue's backoff up to the job's
//!   `max_attempts`, then the job stays `Failed`; [`JobError::Abort`] ends it at once
//!   (`Killed`). Both are listed by `bulkhead jobs failed` and `GET /api/v1/admin/jobs/failed`.
//!
//! Delivery is at least once (a process that dies mid-job leaves it to be run again), so
//! handlers are idempotent, with keys per attempt toward external systems.

pub mod admin;
mod enqueue;
mod failed;
mod liveness;
mod metrics;
pub(crate) mod queue;
mod retention;
mod runtime;
mod service;
mod signals;
mod storage;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::bus::RetryPolicy;

pub use enqueue::enqueue;
pub use failed::{FailedJob, failed_jobs};
pub use queue::JobQueue;
pub use runtime::{JobsConfig, JobsHandle, JobsRuntime};

/// Attempts a job gets when its [`Schedule`] does not say.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// A job's payload: stored as JSON, so read tolerantly (unknown fields ignored) as event
/// payloads are, and changed only in ways older payloads still fit.
pub trait Job: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static {
    /// Namespaced queue name, e.g. "orders.payment_timeout". Stored with every job: never
    /// rename a queue that may still hold jobs.
    const QUEUE: &'static str;
}

/// When and how often a job runs.
#[derive(Debug, Clone, Default)]
pub struct Schedule {
    /// Not before this time (rounded up to the second; apalis keeps seconds). `None`: now.
    pub run_at: Option<DateTime<Utc>>,
    /// At most one job per key and queue is kept: enqueueing a key again is
    /// [`Enqueued::AlreadyScheduled`]. Keys are released when finished jobs are purged.
    pub idempotency_key: Option<String>,
    /// Attempts in all, the first included. `None`: [`DEFAULT_MAX_ATTEMPTS`].
    pub max_attempts: Option<u32>,
}

impl Schedule {
    /// Run now, with default attempts and no key.
    pub fn now() -> Self {
        Self::default()
    }

    /// Run once `delay` has passed.
    pub fn after(delay: Duration) -> Self {
        let run_at = chrono::Duration::from_std(delay)
            .ok()
            .and_then(|delay| Utc::now().checked_add_signed(delay))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        Self { run_at: Some(run_at), ..Self::default() }
    }

    #[must_use]
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }
}

/// What [`enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    New,
    /// A job with the same idempotency key exists in the queue; nothing was added, and the
    /// caller's transaction is unharmed.
    AlreadyScheduled,
}

/// What a handler knows about the run it is in.
#[derive(Debug)]
pub struct JobContext {
    /// The job's id (a ULID), the same for every attempt: the idempotency key toward
    /// external systems (with the attempt appended where each attempt must be distinct).
    pub id: String,
    /// This attempt, from 1.
    pub attempt: u32,
}

impl JobContext {
    /// Metadata for what this run of a `queue` job causes: the correlation of `scheduled_by`
    /// (what enqueued the job), with this job as the cause and the queue as the actor.
    pub fn follow_up(&self, scheduled_by: &crate::bus::Metadata, queue: &str) -> crate::bus::Metadata {
        crate::bus::Metadata {
            causation_id: Some(self.id.clone()),
            actor: Some(format!("system:{queue}")),
            ..scheduled_by.clone()
        }
    }
}

/// Retries of a job that fires at a deadline (a payment timeout, a reservation's expiry):
/// enough attempts to outlast a database failover or a run that starts a little early, each
/// waiting longer, from 1 s up to five minutes.
pub const DEADLINE_RETRY: RetryPolicy =
    RetryPolicy { max_attempts: 30, base_delay: Duration::from_secs(1), max_delay: Duration::from_secs(300) };

/// How a job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt (after the queue's backoff), while attempts remain.
    #[error(transparent)]
    Retry(anyhow::Error),
    /// Never going to work (the order no longer exists, the payload is invalid): the job ends
    /// now, `Killed`, and is listed with the failed ones.
    #[error(transparent)]
    Abort(anyhow::Error),
}

impl From<anyhow::Error> for JobError {
    fn from(error: anyhow::Error) -> Self {
        Self::Retry(error)
    }
}

/// Runs the jobs of one queue. Must be idempotent: a job may run again after a crash, and
/// runs again after a failed attempt.
#[async_trait]
pub trait JobHandler<J: Job>: Send + Sync + 'static {
    async fn run(&self, job: J, ctx: JobContext) -> Result<(), JobError>;
}
