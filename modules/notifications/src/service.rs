//! The notifications use cases: recording what an event asks to be told (in the bus
//! handler's transaction, with its delivery job), delivering email and webhooks (in jobs),
//! managing webhook endpoints, and the admins' retries.

mod deliver_email;
mod deliver_webhook;
mod endpoints;
mod reads;
mod record;
mod retry;
mod sweep;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use lettre::message::Mailbox;
use platform::clock::Clock;
use sqlx::PgPool;
use users_contract::UsersApi;

pub(crate) use endpoints::{CreateEndpoint, CreateEndpointError, Created};
pub(crate) use record::{EmailDelivery, Message, WebhookDelivery};
pub(crate) use retry::{Again, RetryError};

/// The read models handlers render (rows as the store reads them).
pub(crate) use crate::store::endpoints::{EndpointRow, ListKey as EndpointListKey, SORTABLE as ENDPOINTS_SORTABLE};
pub(crate) use crate::store::notifications::{AttemptRow, ListFilter, ListKey, NotificationRow, SORTABLE};

use crate::NotificationsConfig;
use crate::domain::Templates;
use crate::mail::{self, Mailer};
use crate::metrics::DeliveryMetrics;
use crate::webhook_client::WebhookClient;

/// Everything the use cases share.
#[derive(Debug)]
pub(crate) struct NotificationsService {
    pub(crate) pool: PgPool,
    pub(crate) users: Arc<dyn UsersApi>,
    pub(crate) templates: Templates,
    pub(crate) mailer: Mailer,
    pub(crate) from: Mailbox,
    pub(crate) webhooks: WebhookClient,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metrics: DeliveryMetrics,
    pub(crate) config: NotificationsConfig,
}

impl NotificationsService {
    pub(crate) fn new(
        pool: PgPool,
        users: Arc<dyn UsersApi>,
        config: NotificationsConfig,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            pool,
            users,
            templates: Templates::new()?,
            mailer: Mailer::new(&config.email)?,
            from: mail::parse_mailbox(&config.email.from)?,
            webhooks: WebhookClient::new(config.webhooks.allow_private_targets, config.webhooks.timeout)?,
            clock,
            metrics: DeliveryMetrics::default(),
            config,
        })
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}
