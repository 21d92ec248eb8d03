//! The module's background work: delivering one notification, by email or webhook. Enqueued
//! with the notification (or its manual retry) in the same transaction; retried with the
//! channel's backoff while the failure is transient (`RetryConfig`). And a recurring sweep
//! that fails notifications whose delivery job ended without settling them. The delivery
//! payloads belong to the use case that enqueues them (`service/record.rs`); this file only
//! runs them, so the dependency goes jobs → service.

use std::sync::Arc;

use platform::jobs::{Job, JobContext, JobError, JobHandler};
use serde::{Deserialize, Serialize};

use crate::service::{EmailDelivery, NotificationsService, WebhookDelivery};

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
