//! The sandbox gateway's webhooks: asynchronous outcomes of authorizations. A call is applied
//! only if its signature matches, its timestamp is fresh, and its event id was never seen.

use payments_contract::PaymentId;
use payments_contract::events::FailureCode;
use platform::bus::Metadata;
use serde::Deserialize;

use super::PaymentsService;
use crate::domain::PaymentStatus;
use crate::gateway::{SandboxSignature, SignatureError};
use crate::store::{payments, webhooks};

/// A webhook's body.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct WebhookEvent {
    pub(crate) id: String,
    #[serde(rename = "type")]
    pub(crate) event_type: String,
    pub(crate) data: WebhookData,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct WebhookData {
    pub(crate) payment_id: PaymentId,
    pub(crate) reference: String,
    #[serde(default)]
    pub(crate) code: Option<FailureCode>,
    #[serde(default)]
    pub(crate) message: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum WebhookError {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("the body is not a webhook event: {0}")]
    Malformed(String),
    #[error("this event was received before")]
    Replayed,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for WebhookError {
    fn from(error: sqlx::Error) -> Self {
        Self::Unexpected(error.into())
    }
}

/// What a webhook changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The payment moved on.
    Changed,
    /// Valid, but nothing to change (settled already, unknown payment or event type).
    Ignored,
}

impl PaymentsService {
    /// Verifies and applies one webhook call.
    ///
    /// # Errors
    /// See [`WebhookError`]; a refused call changes nothing.
    #[tracing::instrument(skip_all, err(level = "warn"))]
    pub(crate) async fn receive_webhook(
        &self,
        signature: Option<&str>,
        body: &[u8],
        request_id: &str,
    ) -> Result<Applied, WebhookError> {
        let now = self.now();
        let secret = &self.config.webhook_secret;
        SandboxSignature::verify(
            secret,
            signature.ok_or(SignatureError::Malformed)?,
            body,
            now.timestamp(),
            self.config.webhook_tolerance,
        )?;
        let event: WebhookEvent =
            serde_json::from_slice(body).map_err(|error| WebhookError::Malformed(error.to_string()))?;
        let mut tx = self.pool.begin().await?;
        if !webhooks::remember(&mut tx, &event.id, &event.event_type, Some(event.data.payment_id), now).await? {
            return Err(WebhookError::Replayed);
        }
        let Some(payment) = payments::lock(&mut tx, event.data.payment_id).await? else {
            tracing::warn!(payment_id = %event.data.payment_id, "a webhook for an unknown payment");
            tx.commit().await?;
            return Ok(Applied::Ignored);
        };
        let metadata = Metadata {
            causation_id: Some(event.id.clone()),
            actor: Some("system:payments.webhook".to_owned()),
            ..payment.metadata.0.clone()
        };
        let changed = match (payment.status, event.event_type.as_str()) {
            // Also for a payment already over: the hold is then released.
            (_, "payment.authorized") => self.record_authorized(&mut tx, &payment, &event.data.reference).await?,
            (PaymentStatus::Pending, "payment.failed") => {
                let code = event.data.code.unwrap_or(FailureCode::ProcessingError);
                let message = event.data.message.as_deref().unwrap_or("declined");
                self.record_failed(&mut tx, &payment, code, message, &metadata).await?
            }
            (status, event_type) => {
                tracing::info!(%status, event_type, request_id, "nothing for this webhook to change");
                false
            }
        };
        tx.commit().await?;
        Ok(if changed { Applied::Changed } else { Applied::Ignored })
    }
}
