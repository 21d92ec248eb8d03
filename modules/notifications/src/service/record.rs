//! Recording what an event asks to be told, inside the bus handler's transaction: one
//! notification per (event, channel, recipient), `pending` with its delivery job enqueued in
//! the same transaction, or `skipped` with the reason. A redelivered event finds its
//! notifications recorded and changes nothing.

use std::time::Duration;

use platform::bus::{EventEnvelope, HandlerContext, Metadata};
use platform::jobs::Job;
use platform::port::CallContext;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use users_contract::{AccountStatus, ActionRequestId, Contact, UserId, UsersError};
use uuid::Uuid;

use super::NotificationsService;
use crate::domain::{Channel, Status, Template};
use crate::store::endpoints;
use crate::store::notifications::{self as store, NewNotification};

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

/// How long a handler waits for the users module before the event is retried.
const PORT_TIMEOUT: Duration = Duration::from_secs(5);

/// What an event asks to tell a person.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub(crate) template: Template,
    /// The template's variables from the event; the recipient's name is added.
    pub(crate) variables: Value,
    /// The verification or reset request whose link the message carries: only its id is
    /// stored, the link is minted when the message is sent (ADR 0008).
    pub(crate) link_request: Option<ActionRequestId>,
}

impl Message {
    pub(crate) fn new(template: Template, variables: Value) -> Self {
        Self { template, variables, link_request: None }
    }

    pub(crate) fn with_link(mut self, request: ActionRequestId) -> Self {
        self.link_request = Some(request);
        self
    }
}

/// Why a message was recorded but not sent.
const USER_NOT_FOUND: &str = "user_not_found: the users module knows no such user";
const DEACTIVATED: &str = "account_deactivated: the account is closed";
const PREFERENCES: &str = "preferences: the user switched this kind of message off";
/// Why a webhook delivery was recorded failed without an attempt.
const ENDPOINT_DISABLED: &str =
    "endpoint_disabled: the endpoint was disabled when the event happened; redeliver it once enabled";

/// The identity of an event for deduplication: its type and payload. A redelivery has the
/// same id and payload; a duplicate publication has a new id and the same payload (every
/// payload carries its fact's own ids and times, so distinct facts always differ).
/// The payload comes from a `jsonb` column, whose key order is canonical.
pub(crate) fn event_key(envelope: &EventEnvelope) -> Uuid {
    let mut hash = Sha256::new();
    hash.update(envelope.event_type.as_bytes());
    hash.update(b"\n");
    hash.update(envelope.payload.to_string().as_bytes());
    let digest = hash.finalize();
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

fn recipient_of(user: Uuid) -> String {
    format!("user:{user}")
}

impl NotificationsService {
    /// Emails `user` about the event being handled, once.
    ///
    /// # Errors
    /// The users module did not answer (the bus retries the event), or the database failed.
    #[tracing::instrument(skip_all, fields(event_id = %ctx.envelope.id, user_id = %user, template = message.template.key()))]
    pub(crate) async fn tell_user(
        &self,
        ctx: &mut HandlerContext<'_>,
        user: Uuid,
        message: Message,
    ) -> anyhow::Result<()> {
        if store::exists(ctx.tx, event_key(ctx.envelope), Channel::Email, &recipient_of(user)).await? {
            return Ok(());
        }
        let call = CallContext::for_event(ctx.envelope).with_timeout(PORT_TIMEOUT);
        let contact = match self.users.contact(&call, UserId(user)).await {
            Ok(contact) => Some(contact),
            Err(UsersError::UserNotFound(_)) => None,
            Err(error) => return Err(anyhow::Error::new(error).context("asking users how to reach a user")),
        };
        self.record_email(ctx, user, contact.as_ref(), &message).await
    }

    /// Emails every active admin about the event being handled, once each.
    ///
    /// # Errors
    /// As [`Self::tell_user`].
    #[tracing::instrument(skip_all, fields(event_id = %ctx.envelope.id, template = message.template.key()))]
    pub(crate) async fn tell_admins(&self, ctx: &mut HandlerContext<'_>, message: Message) -> anyhow::Result<()> {
        let call = CallContext::for_event(ctx.envelope).with_timeout(PORT_TIMEOUT);
        let admins =
            self.users.admins(&call).await.map_err(|e| anyhow::Error::new(e).context("asking users for the admins"))?;
        for admin in &admins {
            self.record_email(ctx, admin.user_id.0, Some(admin), &message).await?;
        }
        Ok(())
    }

    async fn record_email(
        &self,
        ctx: &mut HandlerContext<'_>,
        user: Uuid,
        contact: Option<&Contact>,
        message: &Message,
    ) -> anyhow::Result<()> {
        let template = message.template;
        let (status, reason) = match contact {
            None => (Status::Skipped, Some(USER_NOT_FOUND)),
            Some(c) if c.status == AccountStatus::Deactivated => (Status::Skipped, Some(DEACTIVATED)),
            Some(c) if !c.preferences.allows(users_contract::Channel::Email, template.category()) => {
                (Status::Skipped, Some(PREFERENCES))
            }
            Some(_) => (Status::Pending, None),
        };
        let mut content = message.variables.clone();
        if let Some(map) = content.as_object_mut() {
            map.insert("name".to_owned(), contact.map_or_else(String::new, |c| c.display_name.clone()).into());
            if let Some(request) = message.link_request {
                map.insert("request_id".to_owned(), json!(request));
            }
        }
        let subject = self.templates.subject(template, &self.with_shop(&content))?;
        let notification = NewNotification {
            id: Uuid::now_v7(),
            event_id: ctx.envelope.id,
            event_key: event_key(ctx.envelope),
            event_type: ctx.envelope.event_type.clone(),
            channel: Channel::Email,
            recipient: recipient_of(user),
            user_id: Some(user),
            endpoint_id: None,
            address: contact.map(|c| c.email.clone()),
            template: Some(template.key().to_owned()),
            subject: Some(subject),
            content,
            status,
            reason: reason.map(str::to_owned),
            at: self.now(),
        };
        let metadata = ctx.follow_up();
        if store::insert(ctx.tx, &notification).await? && status == Status::Pending {
            self.enqueue(ctx.tx, Channel::Email, notification.id, 0, metadata).await?;
        } else if status == Status::Skipped {
            tracing::info!(reason, "notification skipped");
        }
        Ok(())
    }

    /// Queues a signed delivery of the event being handled to every enabled endpoint that
    /// asked for its type, once each. A disabled endpoint's delivery is recorded `failed`
    /// (`endpoint_disabled`) without a job, so it can be redelivered once the endpoint is
    /// enabled again: what happened meanwhile is not lost.
    ///
    /// # Errors
    /// Database failures.
    #[tracing::instrument(skip_all, fields(event_id = %ctx.envelope.id, event_type = %ctx.envelope.event_type))]
    pub(crate) async fn tell_webhooks(&self, ctx: &mut HandlerContext<'_>) -> anyhow::Result<()> {
        let envelope = ctx.envelope;
        for endpoint in endpoints::subscribed(ctx.tx, &envelope.event_type).await? {
            let id = Uuid::now_v7();
            // The body is fixed now, so every attempt and redelivery sends the same bytes.
            let body = json!({
                "id": id,
                "type": envelope.event_type,
                "event_id": envelope.id,
                "occurred_at": envelope.occurred_at,
                "data": envelope.payload,
            });
            let notification = NewNotification {
                id,
                event_id: envelope.id,
                event_key: event_key(envelope),
                event_type: envelope.event_type.clone(),
                channel: Channel::Webhook,
                recipient: format!("endpoint:{}", endpoint.id),
                user_id: None,
                endpoint_id: Some(endpoint.id),
                address: Some(endpoint.url.clone()),
                template: None,
                subject: None,
                content: body,
                status: if endpoint.enabled() { Status::Pending } else { Status::Failed },
                reason: (!endpoint.enabled()).then(|| ENDPOINT_DISABLED.to_owned()),
                at: self.now(),
            };
            if store::insert(ctx.tx, &notification).await? && notification.status == Status::Pending {
                self.enqueue(ctx.tx, Channel::Webhook, id, 0, ctx.follow_up()).await?;
            }
        }
        Ok(())
    }

    /// Enqueues the delivery of a notification's `generation` (0 first, then one per manual
    /// retry) in the caller's transaction.
    pub(crate) async fn enqueue(
        &self,
        tx: &mut PgConnection,
        channel: Channel,
        id: Uuid,
        generation: i32,
        metadata: Metadata,
    ) -> anyhow::Result<()> {
        let key = format!("{id}:{generation}");
        match channel {
            Channel::Email => {
                let attempts = self.config.email.retry.attempts;
                let schedule = platform::jobs::Schedule::now().idempotency_key(key).max_attempts(attempts);
                let job = EmailDelivery { notification_id: id, metadata, max_attempts: Some(attempts) };
                platform::jobs::enqueue(tx, &job, schedule).await?;
            }
            Channel::Webhook => {
                let attempts = self.config.webhooks.retry.attempts;
                let schedule = platform::jobs::Schedule::now().idempotency_key(key).max_attempts(attempts);
                let job = WebhookDelivery { notification_id: id, metadata, max_attempts: Some(attempts) };
                platform::jobs::enqueue(tx, &job, schedule).await?;
            }
        }
        Ok(())
    }

    /// The variables every template may use, added to a notification's own.
    pub(crate) fn with_shop(&self, content: &Value) -> Value {
        let mut content = content.clone();
        if let Some(map) = content.as_object_mut() {
            map.insert("shop_name".to_owned(), self.config.shop_name.clone().into());
        }
        content
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn envelope(id: Uuid, event_type: &str, payload: Value) -> EventEnvelope {
        EventEnvelope {
            id,
            source: "orders".to_owned(),
            position: 1,
            event_type: event_type.to_owned(),
            event_version: 1,
            aggregate_key: "k".to_owned(),
            payload,
            metadata: Metadata::default(),
            occurred_at: Utc::now(),
        }
    }

    #[test]
    fn an_event_is_known_by_its_type_and_payload_whatever_its_id() {
        let payload = json!({"order_id": "o-1", "confirmed_at": "2026-11-21T09:30:00Z"});
        let first = event_key(&envelope(Uuid::now_v7(), "orders.order_confirmed", payload.clone()));
        let republished = event_key(&envelope(Uuid::now_v7(), "orders.order_confirmed", payload.clone()));
        assert_eq!(first, republished);
        let other_fact = json!({"order_id": "o-2", "confirmed_at": "2026-11-21T09:30:00Z"});
        assert_ne!(first, event_key(&envelope(Uuid::now_v7(), "orders.order_confirmed", other_fact)));
        assert_ne!(first, event_key(&envelope(Uuid::now_v7(), "orders.order_shipped", payload)));
    }
}
