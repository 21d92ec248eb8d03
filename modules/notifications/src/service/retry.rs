//! An admin sends a notification again: a failed one (any channel), or a webhook delivery
//! the receiver wants again. The notification becomes pending and a new job is enqueued in
//! the same transaction, keyed by the notification's new generation.

use platform::bus::Metadata;
use uuid::Uuid;

use super::NotificationsService;
use crate::domain::notification::TransitionError;
use crate::store::endpoints;
use crate::store::notifications::{self as store, NotificationRow};

#[derive(Debug, thiserror::Error)]
pub(crate) enum RetryError {
    #[error("no such notification")]
    NotFound,
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("the endpoint is disabled")]
    EndpointDisabled,
    #[error("the endpoint was deleted")]
    EndpointDeleted,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Which move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Again {
    /// A failed notification, any channel.
    Retry,
    /// A failed or delivered webhook.
    Redeliver,
}

impl NotificationsService {
    /// Makes `id` pending again and enqueues its delivery. `endpoint`, when given, must be
    /// the webhook endpoint the notification belongs to.
    ///
    /// # Errors
    /// Not found (or not the endpoint's), a status that does not allow it, a disabled or
    /// deleted endpoint, or a database failure.
    #[tracing::instrument(skip_all, fields(notification_id = %id), err(level = "info"))]
    pub(crate) async fn send_again(
        &self,
        id: Uuid,
        endpoint: Option<Uuid>,
        again: Again,
        metadata: Metadata,
    ) -> Result<NotificationRow, RetryError> {
        let mut tx = self.pool.begin().await.map_err(anyhow::Error::from)?;
        let notification = store::lock(&mut tx, id).await?.ok_or(RetryError::NotFound)?;
        if endpoint.is_some() && notification.endpoint_id != endpoint {
            return Err(RetryError::NotFound);
        }
        let status = notification.status;
        match again {
            Again::Retry => status.retry()?,
            Again::Redeliver => status.redeliver()?,
        };
        let channel = notification.channel;
        if let Some(endpoint_id) = notification.endpoint_id {
            match endpoints::find(&mut tx, endpoint_id).await? {
                None => return Err(RetryError::EndpointDeleted),
                Some(endpoint) if !endpoint.enabled() => return Err(RetryError::EndpointDisabled),
                Some(_) => {}
            }
        }
        let generation = store::reopen(&mut tx, id, self.now()).await?;
        self.enqueue(&mut tx, channel, id, generation, metadata).await?;
        tx.commit().await.map_err(anyhow::Error::from)?;
        let mut db = self.pool.acquire().await.map_err(anyhow::Error::from)?;
        store::find(&mut db, id).await?.ok_or(RetryError::NotFound)
    }
}
