//! The module's background work: delivering one notification, by email or webhook. Enqueued
//! with the notification (or its manual retry) in the same transaction; retried with the
//! channel's backoff while the failure is transient (`RetryConfig`). And a recurring sweep
//! that fails notifications whose delivery job ended without settling them.

use std::sync::Arc;

use platform::bus::Metadata;
use platform::jobs::{Job, JobContext, JobError, JobHandler};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::service::NotificationsService;

/// Send one email notification. Carries its id only: the address and variables are in the
/// row, and a link is minted when it is sent, so no payload ever holds a secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EmailDelivery {
    pub(crate) notification_id: Uuid,
    /// What recorded it, so the port calls of the delivery continue its correlation.
    pub(crate) metadata: Metadata,
    /// The attempts this job was enqueued with (`Schedule::max_attempts`): the last one
    /// settles the notification, whatever the configuration says by the time it runs.
    #[serde(default)]
    pub(crate) max_attempts: Option<u32>,
}

impl Job for EmailDelivery {
    const QUEUE: &'static str = "notifications.email";
}

/// Deliver one webhook notification.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WebhookDelivery {
    pub(crate) notification_id: Uuid,
    pub(crate) metadata: Metadata,
    /// As [`EmailDelivery::max_attempts`].
    #[serde(default)]
    pub(crate) max_attempts: Option<u32>,
}

impl Job for WebhookDelivery {
    const QUEUE: &'static str = "notifications.webhook";
}

/// Runs [`EmailDelivery`] jobs.
#[derive(Debug, Clone)]
pub(crate) struct EmailHandler(pub(crate) Arc<NotificationsService>);

#[async_trait::async_trait]
impl JobHandler<EmailDelivery> for EmailHandler {
    async fn run(&self, job: EmailDelivery, ctx: JobContext) -> Result<(), JobError> {
        let attempts = job.max_attempts.unwrap_or(self.0.config.email.retry.attempts);
        self.0.deliver_email(job.notification_id, &ctx, attempts, &job.metadata).await
    }
}

/// Runs [`WebhookDelivery`] jobs.
#[derive(Debug, Clone)]
pub(crate) struct WebhookHandler(pub(crate) Arc<NotificationsService>);

#[async_trait::async_trait]
impl JobHandler<WebhookDelivery> for WebhookHandler {
    async fn run(&self, job: WebhookDelivery, ctx: JobContext) -> Result<(), JobError> {
        let attempts = job.max_attempts.unwrap_or(self.0.config.webhooks.retry.attempts);
        self.0.deliver_webhook(job.notification_id, &ctx, attempts).await
    }
}

/// Fail the notifications whose delivery job ended without an outcome (recurring).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SweepStale {}

impl Job for SweepStale {
    const QUEUE: &'static str = "notifications.sweep_stale";
}

/// Runs [`SweepStale`] jobs.
#[derive(Debug, Clone)]
pub(crate) struct SweepHandler(pub(crate) Arc<NotificationsService>);

#[async_trait::async_trait]
impl JobHandler<SweepStale> for SweepHandler {
    async fn run(&self, _job: SweepStale, _ctx: JobContext) -> Result<(), JobError> {
        self.0.sweep_stale().await.map(drop).map_err(JobError::Retry)
    }
}
