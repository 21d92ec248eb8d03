//! The sandbox gateway's webhook endpoint.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use platform::http::{ApiError, Data, ErrorEnvelope, RequestContext};
use serde::Serialize;
use utoipa::ToSchema;

use super::PaymentsState;
use crate::gateway::{SandboxSignature, SignatureError};
use crate::service::webhooks::{Applied, WebhookError};

/// What the webhook did.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookAck {
    /// Whether a payment moved on (`false`: valid, but it was settled already).
    applied: bool,
}

/// Asynchronous outcomes from the sandbox gateway (`payment.authorized`, `payment.failed`).
/// Signed: header `Sandbox-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`
/// with the shared secret; calls more than 5 minutes off, badly signed or replayed (an event
/// id seen before) are refused and change nothing.
#[utoipa::path(post, path = "/payments/webhooks/sandbox", tag = "payments",
    params(("Sandbox-Signature" = String, Header, description = "`t=<unix seconds>,v1=<hex HMAC-SHA256 over \"<t>.<raw body>\">`")),
    request_body(content = String, content_type = "application/json", description = "`{\"id\": \"evt_…\", \"type\": \"payment.authorized\", \"created\": 1763717400, \"data\": {\"payment_id\": \"…\", \"reference\": \"auth_…\", \"code\": null, \"message\": null}}`"),
    responses(
        (status = 200, description = "Applied, or valid with nothing to change", body = inline(platform::http::Envelope<WebhookAck>)),
        (status = 400, description = "`invalid_signature` (missing, malformed or not matching), `stale_webhook` (timestamp outside the tolerance) or `invalid_webhook` (not an event)", body = ErrorEnvelope),
        (status = 409, description = "`webhook_replayed`: this event id was received before", body = ErrorEnvelope),
    ))]
pub(crate) async fn sandbox_webhook(
    State(state): State<PaymentsState>,
    ctx: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Data<WebhookAck>, ApiError> {
    let signature = headers.get(SandboxSignature::HEADER).and_then(|value| value.to_str().ok());
    match state.service.receive_webhook(signature, &body, &ctx.request_id).await {
        Ok(applied) => Ok(Data(WebhookAck { applied: applied == Applied::Changed })),
        Err(WebhookError::Signature(SignatureError::Stale)) => Err(ApiError::bad_request(
            "stale_webhook",
            "The signature's timestamp is too far from now; the call may be a replay.",
        )),
        Err(WebhookError::Signature(_)) => Err(ApiError::bad_request(
            "invalid_signature",
            "The Sandbox-Signature header is missing or does not match.",
        )),
        Err(WebhookError::Malformed(reason)) => {
            Err(ApiError::bad_request("invalid_webhook", format!("The body is not a webhook event: {reason}")))
        }
        Err(WebhookError::Replayed) => Err(ApiError::conflict(
            "webhook_replayed",
            "This webhook event was received before; it was not applied again.",
        )),
        Err(WebhookError::Unexpected(error)) => Err(ApiError::internal(error)),
    }
}
