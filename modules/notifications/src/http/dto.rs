//! Request and response bodies, with the examples the OpenAPI document shows.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::domain::EndpointStatus;
use crate::domain::{Channel, Status};
use crate::service::{AttemptRow, EndpointRow, NotificationRow};

/// A notification: one message to one recipient on one channel because of one event.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "0193b5f2-8a4e-7c3d-9a51-0000000000e1", "event_id": "0193b5f2-8a4e-7c3d-9a51-0000000000e0",
    "event_type": "orders.order_confirmed", "channel": "email", "status": "sent",
    "recipient": "user:0193b5f2-8a4e-7c3d-9a51-3f0c2b6d7e81",
    "user_id": "0193b5f2-8a4e-7c3d-9a51-3f0c2b6d7e81", "endpoint_id": null, "address": "ada@example.com",
    "subject": "Order 0193b5f2-8a4e-7c3d-9a51-000000000001 confirmed", "reason": null, "attempts": 1,
    "sent_at": "2026-11-21T09:30:02Z", "created_at": "2026-11-21T09:30:01Z", "updated_at": "2026-11-21T09:30:02Z"
}))]
pub(crate) struct NotificationView {
    pub(crate) id: Uuid,
    /// The event that caused it.
    pub(crate) event_id: Uuid,
    pub(crate) event_type: String,
    pub(crate) channel: Channel,
    pub(crate) status: Status,
    /// `user:<id>` or `endpoint:<id>`.
    pub(crate) recipient: String,
    /// The person told (email).
    pub(crate) user_id: Option<Uuid>,
    /// The endpoint told (webhooks).
    pub(crate) endpoint_id: Option<Uuid>,
    /// The email address, or the endpoint's URL.
    pub(crate) address: Option<String>,
    pub(crate) subject: Option<String>,
    /// Why it was skipped or failed, or the last error while it is retried.
    pub(crate) reason: Option<String>,
    /// Delivery attempts so far.
    pub(crate) attempts: i32,
    pub(crate) sent_at: Option<DateTime<Utc>>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

impl From<NotificationRow> for NotificationView {
    fn from(row: NotificationRow) -> Self {
        Self {
            id: row.id,
            event_id: row.event_id,
            event_type: row.event_type.clone(),
            channel: row.channel,
            status: row.status,
            recipient: row.recipient,
            user_id: row.user_id,
            endpoint_id: row.endpoint_id,
            address: row.address,
            subject: row.subject,
            reason: row.reason,
            attempts: row.attempts,
            sent_at: row.sent_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// What a customer is told of a failure in their own history: the SMTP server's words (or
/// lettre's) are for admins, who keep them.
const FAILED_FOR_CUSTOMER: &str = "could not be delivered";
const RETRYING_FOR_CUSTOMER: &str = "delivery failed; we will retry";

impl NotificationView {
    /// The view of a notification's own recipient: delivery errors become a generic reason
    /// (skipped ones keep theirs, which are this module's own words about the account).
    pub(crate) fn for_customer(mut self) -> Self {
        self.reason = match self.status {
            Status::Failed => Some(FAILED_FOR_CUSTOMER.to_owned()),
            Status::Pending => self.reason.map(|_| RETRYING_FOR_CUSTOMER.to_owned()),
            Status::Sent | Status::Skipped => self.reason,
        };
        self
    }
}

impl NotificationDetail {
    /// As [`NotificationView::for_customer`], attempts included.
    pub(crate) fn for_customer(self) -> Self {
        let delivery_attempts = self
            .delivery_attempts
            .into_iter()
            .map(|attempt| AttemptView { error: attempt.error.map(|_| RETRYING_FOR_CUSTOMER.to_owned()), ..attempt })
            .collect();
        Self { notification: self.notification.for_customer(), delivery_attempts }
    }
}

/// A notification with every delivery attempt, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct NotificationDetail {
    #[serde(flatten)]
    pub(crate) notification: NotificationView,
    pub(crate) delivery_attempts: Vec<AttemptView>,
}

/// One delivery attempt.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct AttemptView {
    pub(crate) attempt: i32,
    pub(crate) at: DateTime<Utc>,
    /// `succeeded`, `transient_failure` (retried) or `permanent_failure`.
    pub(crate) outcome: String,
    /// The HTTP status (webhooks) or SMTP reply code (email), when there was an answer.
    pub(crate) response_code: Option<i32>,
    pub(crate) latency_ms: i64,
    pub(crate) error: Option<String>,
}

impl From<AttemptRow> for AttemptView {
    fn from(row: AttemptRow) -> Self {
        Self {
            attempt: row.attempt,
            at: row.at,
            outcome: row.outcome,
            response_code: row.response_code,
            latency_ms: row.latency_ms,
            error: row.error,
        }
    }
}

/// Filters and page of the notification listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListNotificationsQuery {
    pub(crate) status: Option<Status>,
    pub(crate) channel: Option<Channel>,
    /// E.g. `orders.order_confirmed`.
    pub(crate) event_type: Option<String>,
    /// Admins only: this person's notifications.
    pub(crate) user_id: Option<Uuid>,
    #[param(minimum = 1, maximum = 100)]
    pub(crate) limit: Option<u32>,
    pub(crate) after: Option<String>,
    /// `created_at` or `-created_at` (the default, newest first).
    pub(crate) sort: Option<String>,
}

/// Filters and page of an endpoint's deliveries.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListDeliveriesQuery {
    pub(crate) status: Option<Status>,
    pub(crate) event_type: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    pub(crate) limit: Option<u32>,
    pub(crate) after: Option<String>,
    /// `created_at` or `-created_at` (the default, newest first).
    pub(crate) sort: Option<String>,
}

/// Registers a webhook endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "url": "https://erp.example.com/hooks/bulkhead", "description": "ERP order sync",
    "event_types": ["orders.order_confirmed", "orders.order_cancelled"]
}))]
pub(crate) struct CreateEndpointRequest {
    /// `http` or `https`, resolving to public addresses only (unless the server allows
    /// private targets); at most 2,000 characters.
    pub(crate) url: String,
    /// At most 200 characters.
    pub(crate) description: Option<String>,
    /// 1 to 9 event types of those listed in docs/notifications.md, e.g.
    /// `orders.order_confirmed`.
    pub(crate) event_types: Vec<String>,
}

/// A webhook endpoint. Its secret is only shown in the answer to its creation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "0193b5f2-8a4e-7c3d-9a51-0000000000f1", "url": "https://erp.example.com/hooks/bulkhead",
    "description": "ERP order sync", "event_types": ["orders.order_confirmed"], "status": "enabled",
    "consecutive_failures": 0, "disabled_reason": null, "created_by": "0193b5f2-8a4e-7c3d-9a51-3f0c2b6d7e81",
    "created_at": "2026-11-21T09:30:00Z", "updated_at": "2026-11-21T09:30:00Z"
}))]
pub(crate) struct EndpointView {
    pub(crate) id: Uuid,
    pub(crate) url: String,
    pub(crate) description: Option<String>,
    pub(crate) event_types: Vec<String>,
    /// `enabled`, or `disabled` after too many failed attempts in a row.
    #[schema(value_type = String)]
    pub(crate) status: EndpointStatus,
    pub(crate) consecutive_failures: i32,
    pub(crate) disabled_reason: Option<String>,
    /// The admin who registered it.
    pub(crate) created_by: Uuid,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

impl From<&EndpointRow> for EndpointView {
    fn from(row: &EndpointRow) -> Self {
        Self {
            id: row.id,
            url: row.url.clone(),
            description: row.description.clone(),
            event_types: row.event_types.clone(),
            status: row.status,
            consecutive_failures: row.consecutive_failures,
            disabled_reason: row.disabled_reason.clone(),
            created_by: row.created_by,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A new endpoint with its signing secret: store it now, it is not shown again (a retry
/// with the same `Idempotency-Key` within 24 hours replays this answer). `Debug` leaves the
/// secret out.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct CreatedEndpoint {
    #[serde(flatten)]
    pub(crate) endpoint: EndpointView,
    /// `whsec_…`: the HMAC-SHA256 key of `Bulkhead-Signature`.
    pub(crate) secret: String,
}

impl std::fmt::Debug for CreatedEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedEndpoint").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}
