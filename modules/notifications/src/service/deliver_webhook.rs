//! Delivering one webhook notification, in its job: the stored body, signed now
//! (`Bulkhead-Signature: t=…,v1=…`), posted through the vetted client. 2xx is success; 408,
//! 429, 5xx and connection trouble are retried with backoff; other answers and refused
//! targets fail at once. Every attempt is recorded with its status, latency and error, and
//! counts toward disabling the endpoint after too many failures in a row.

use platform::jobs::{JobContext, JobError};
use uuid::Uuid;

use super::NotificationsService;
use crate::domain::{Channel, Status, signature};
use crate::store::endpoints;
use crate::store::notifications::{self as store, Attempt};

impl NotificationsService {
    /// Delivers webhook notification `id` if it is still pending.
    ///
    /// # Errors
    /// [`JobError::Retry`] after a transient failure while attempts remain (recorded);
    /// [`JobError::Abort`] for a notification that does not exist.
    #[tracing::instrument(skip_all, fields(notification_id = %id, attempt = ctx.attempt), err(level = "warn"))]
    pub(crate) async fn deliver_webhook(&self, id: Uuid, ctx: &JobContext, max_attempts: u32) -> Result<(), JobError> {
        let mut tx = self.pool.begin().await.map_err(anyhow::Error::from)?;
        let Some(notification) = store::lock(&mut tx, id).await? else {
            return Err(JobError::Abort(anyhow::anyhow!("notification {id} does not exist")));
        };
        if !notification.status.deliverable() {
            return Ok(());
        }
        let now = self.now();
        let endpoint = match notification.endpoint_id {
            Some(endpoint) => endpoints::find(&mut tx, endpoint).await?,
            None => None,
        };
        let Some(endpoint) = endpoint else {
            store::settle(&mut tx, id, Status::Failed, Some("endpoint_deleted: the endpoint was deleted"), now).await?;
            tx.commit().await.map_err(anyhow::Error::from)?;
            return Ok(());
        };
        if !endpoint.enabled() {
            let reason = format!(
                "endpoint_disabled: {}",
                endpoint.disabled_reason.as_deref().unwrap_or("the endpoint is disabled")
            );
            store::settle(&mut tx, id, Status::Failed, Some(&reason), now).await?;
            tx.commit().await.map_err(anyhow::Error::from)?;
            return Ok(());
        }

        let body = serde_json::to_vec(&notification.content).map_err(anyhow::Error::from)?;
        let timestamp = now.timestamp();
        let headers = vec![
            (signature::HEADER, signature::header_value(&endpoint.secret(), timestamp, &body)),
            ("bulkhead-event-type", notification.event_type.clone()),
            ("bulkhead-event-id", notification.event_id.to_string()),
            ("bulkhead-delivery-id", notification.id.to_string()),
        ];
        let result = self.webhooks.post(&endpoint.url, headers, body).await;
        let (outcome, code, latency, error) = match result {
            Ok(answer) if (200..300).contains(&answer.status) => {
                ("succeeded", Some(answer.status), answer.latency, None)
            }
            Ok(answer) => {
                let transient = matches!(answer.status, 408 | 429 | 500..=599);
                let label = if transient { "transient_failure" } else { "permanent_failure" };
                (label, Some(answer.status), answer.latency, Some(format!("the endpoint answered {}", answer.status)))
            }
            Err(failure) => {
                let label = if failure.transient { "transient_failure" } else { "permanent_failure" };
                (label, None, failure.latency, Some(failure.message))
            }
        };
        self.metrics.attempt(Channel::Webhook, outcome, latency.as_secs_f64());
        let at = self.now();
        let attempt = Attempt {
            at,
            outcome,
            response_code: code,
            latency_ms: i64::try_from(latency.as_millis()).unwrap_or(i64::MAX),
            error: error.clone(),
        };
        store::record_attempt(&mut tx, id, &attempt).await?;
        let error = match error {
            None => {
                endpoints::succeeded(&mut tx, endpoint.id, at).await?;
                store::settle(&mut tx, id, Status::Sent, None, at).await?;
                tx.commit().await.map_err(anyhow::Error::from)?;
                return Ok(());
            }
            Some(error) => error,
        };
        let limit = self.config.webhooks.disable_after_failures;
        let disabled = endpoints::failed(&mut tx, endpoint.id, limit, at).await?;
        if disabled {
            tracing::warn!(endpoint_id = %endpoint.id, "webhook endpoint disabled after {limit} failures in a row");
        }
        let last = ctx.attempt >= max_attempts;
        let retry = outcome == "transient_failure" && !last && !disabled;
        if !retry {
            let reason = if disabled {
                format!("{error}; the endpoint was disabled after {limit} failures in a row")
            } else if outcome == "transient_failure" {
                format!("gave up after {} attempts: {error}", ctx.attempt)
            } else {
                error.clone()
            };
            tracing::warn!(endpoint_id = %endpoint.id, %reason, "webhook not delivered");
            store::settle(&mut tx, id, Status::Failed, Some(&reason), at).await?;
        }
        tx.commit().await.map_err(anyhow::Error::from)?;
        if retry { Err(JobError::Retry(anyhow::anyhow!("webhook {id} not delivered yet: {error}"))) } else { Ok(()) }
    }
}
