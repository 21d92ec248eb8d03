//! Delivering one email notification, in its job. The notification stays locked while it is
//! sent, so two runs of its job (a crash, a duplicate) cannot both send it; whatever happens
//! is recorded as an attempt in the same transaction that settles it.
//!
//! A message that carries a one-time link is rendered here, with the link minted just now
//! through `UsersApi::action_link` (ADR 0008): the link lives in memory and in the message,
//! never in a row, a job payload or a log line.

use std::time::Instant;

use platform::bus::Metadata;
use platform::jobs::{JobContext, JobError};
use platform::port::CallContext;
use serde_json::Value;
use users_contract::{ActionRequestId, UsersError};
use uuid::Uuid;

use super::NotificationsService;
use crate::domain::{Channel, Status, Template};
use crate::mail::{Outgoing, SendError};
use crate::store::notifications::{self as store, Attempt, NotificationRow};

/// How an attempt ended, before it is recorded.
enum Outcome {
    Sent,
    Transient { code: Option<u16>, error: String },
    Permanent { code: Option<u16>, error: String },
}

impl NotificationsService {
    /// Sends email notification `id` if it is still pending.
    ///
    /// # Errors
    /// [`JobError::Retry`] after a transient failure while attempts remain (recorded);
    /// [`JobError::Abort`] for a notification that does not exist.
    #[tracing::instrument(skip_all, fields(notification_id = %id, attempt = ctx.attempt), err(level = "warn"))]
    pub(crate) async fn deliver_email(
        &self,
        id: Uuid,
        ctx: &JobContext,
        max_attempts: u32,
        metadata: &Metadata,
    ) -> Result<(), JobError> {
        let mut tx = self.pool.begin().await.map_err(anyhow::Error::from)?;
        let Some(notification) = store::lock(&mut tx, id).await? else {
            return Err(JobError::Abort(anyhow::anyhow!("notification {id} does not exist")));
        };
        if !notification.status.deliverable() {
            // Settled by an earlier run of this job.
            return Ok(());
        }
        let started = Instant::now();
        let outcome = self.send_email(&notification, metadata).await;
        let latency = started.elapsed();
        let last = ctx.attempt >= max_attempts;
        let (label, code, error) = match &outcome {
            Outcome::Sent => ("succeeded", None, None),
            Outcome::Transient { code, error } => ("transient_failure", *code, Some(error.clone())),
            Outcome::Permanent { code, error } => ("permanent_failure", *code, Some(error.clone())),
        };
        self.metrics.attempt(Channel::Email, label, latency.as_secs_f64());
        let at = self.now();
        let attempt = Attempt {
            at,
            outcome: label,
            response_code: code,
            latency_ms: i64::try_from(latency.as_millis()).unwrap_or(i64::MAX),
            error: error.clone(),
        };
        store::record_attempt(&mut tx, id, &attempt).await?;
        let retry = match outcome {
            Outcome::Sent => {
                store::settle(&mut tx, id, Status::Sent, None, at).await?;
                None
            }
            Outcome::Transient { error, .. } if !last => Some(error),
            Outcome::Transient { error, .. } => {
                let reason = format!("gave up after {} attempts: {error}", ctx.attempt);
                tracing::warn!(%reason, "email not sent");
                store::settle(&mut tx, id, Status::Failed, Some(&reason), at).await?;
                None
            }
            Outcome::Permanent { error, .. } => {
                tracing::warn!(reason = %error, "email not sent");
                store::settle(&mut tx, id, Status::Failed, Some(&error), at).await?;
                None
            }
        };
        tx.commit().await.map_err(anyhow::Error::from)?;
        match retry {
            Some(error) => Err(JobError::Retry(anyhow::anyhow!("email {id} not sent yet: {error}"))),
            None => Ok(()),
        }
    }

    async fn send_email(&self, notification: &NotificationRow, metadata: &Metadata) -> Outcome {
        let permanent = |error: String| Outcome::Permanent { code: None, error };
        let Some(template) = notification.template.as_deref().and_then(Template::parse) else {
            return permanent(format!("unknown template {:?}", notification.template));
        };
        let Some(address) = notification.address.as_deref() else {
            return permanent("the notification has no address".to_owned());
        };
        let mut context = self.with_shop(&notification.content);
        if template.carries_link() {
            match self.mint_link(&context, metadata).await {
                Ok((url, expires_at)) => {
                    if let Some(map) = context.as_object_mut() {
                        map.insert("link".to_owned(), url.into());
                        map.insert("link_expires_at".to_owned(), expires_at.into());
                    }
                }
                Err(outcome) => return outcome,
            }
        }
        let rendered = match self.templates.render(template, &context) {
            Ok(rendered) => rendered,
            Err(error) => return permanent(format!("rendering {}: {error:#}", template.key())),
        };
        let name = context.get("name").and_then(Value::as_str).unwrap_or_default();
        let outgoing = Outgoing { id: notification.id, to_name: name, to_address: address, rendered: &rendered };
        match self.mailer.send(&self.from, &outgoing).await {
            Ok(()) => Outcome::Sent,
            Err(error @ SendError::Transient { .. }) => {
                Outcome::Transient { code: error.code(), error: error.to_string() }
            }
            Err(error @ SendError::Permanent { .. }) => {
                Outcome::Permanent { code: error.code(), error: error.to_string() }
            }
        }
    }

    /// The link and its expiry, freshly minted.
    async fn mint_link(&self, context: &Value, metadata: &Metadata) -> Result<(String, String), Outcome> {
        let request =
            context.get("request_id").and_then(|id| serde_json::from_value::<Uuid>(id.clone()).ok()).ok_or_else(
                || Outcome::Permanent { code: None, error: "the notification names no link request".to_owned() },
            )?;
        let call = CallContext::from_metadata(metadata).with_timeout(std::time::Duration::from_secs(10));
        match self.users.action_link(&call, ActionRequestId(request)).await {
            Ok(link) => Ok((link.url.clone(), link.expires_at.format("%Y-%m-%d %H:%M UTC").to_string())),
            Err(error @ UsersError::LinkUnavailable(_)) => {
                Err(Outcome::Permanent { code: None, error: format!("link_unavailable: {error}") })
            }
            Err(error) if error.is_transient() => {
                Err(Outcome::Transient { code: None, error: format!("minting the link: {error}") })
            }
            Err(error) => Err(Outcome::Permanent { code: None, error: format!("minting the link: {error}") }),
        }
    }
}
