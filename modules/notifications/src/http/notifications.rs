//! People's notification history, and the admins' view and retries.

use axum::extract::State;
use platform::auth::{AdminOnly, Authenticated, Principal};
use platform::http::pagination::PageMeta;
use platform::http::{ApiError, Created, Data, ErrorEnvelope, Page, PageQuery, Path, Query, RequestContext};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::dto::{AttemptView, ListNotificationsQuery, NotificationDetail, NotificationView};
use super::{NotificationsState, user_of};
use crate::service::{Again, ListFilter, ListKey, RetryError, SORTABLE};

/// A page of notifications.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NotificationPage {
    data: Vec<NotificationView>,
    meta: PageMeta,
}

/// Lists notifications, newest first: a person's own (with a generic `reason` for delivery
/// failures); for admins everyone's (email and webhooks, with the servers' error text),
/// filtered by status, channel, event type and person.
#[utoipa::path(get, path = "/notifications", tag = "notifications",
    params(ListNotificationsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of notifications", body = NotificationPage),
        (status = 400, description = "Bad limit, sort, cursor or filter", body = ErrorEnvelope),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "`user_id` of someone else from a non-admin", body = ErrorEnvelope),
    ))]
pub(crate) async fn list_notifications(
    Authenticated(principal): Authenticated,
    State(state): State<NotificationsState>,
    Query(query): Query<ListNotificationsQuery>,
) -> Result<Page<NotificationView>, ApiError> {
    let page = PageQuery { limit: query.limit, after: query.after, sort: query.sort }
        .parse::<ListKey>(SORTABLE, "-created_at")?;
    let user_id = if principal.is_admin() {
        query.user_id
    } else {
        let me = user_of(&principal)?;
        if query.user_id.is_some_and(|asked| asked != me) {
            return Err(ApiError::forbidden());
        }
        Some(me)
    };
    let filter = ListFilter {
        user_id,
        endpoint_id: None,
        status: query.status,
        channel: query.channel,
        event_type: query.event_type,
    };
    let admin = principal.is_admin();
    Ok(state.service.list_notifications(&filter, &page).await?.map(|row| {
        let view = NotificationView::from(row);
        if admin { view } else { view.for_customer() }
    }))
}

/// The notification if the caller may see it (its recipient, or an admin); 404 otherwise.
async fn visible(state: &NotificationsState, principal: &Principal, id: Uuid) -> Result<NotificationDetail, ApiError> {
    let (row, attempts) =
        state.service.notification(id).await?.ok_or_else(|| ApiError::not_found("The notification"))?;
    if !principal.is_admin() && row.user_id.is_none_or(|user| user.to_string() != principal.subject) {
        return Err(ApiError::not_found("The notification"));
    }
    let detail = NotificationDetail {
        notification: row.into(),
        delivery_attempts: attempts.into_iter().map(AttemptView::from).collect(),
    };
    Ok(if principal.is_admin() { detail } else { detail.for_customer() })
}

/// One notification with its delivery attempts: for its recipient (delivery errors in
/// generic words) or an admin (the servers' own).
#[utoipa::path(get, path = "/notifications/{id}", tag = "notifications",
    params(("id" = Uuid, Path, description = "Notification id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The notification", body = inline(platform::http::Envelope<NotificationDetail>)),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 404, description = "No such notification, or not yours", body = ErrorEnvelope),
    ))]
pub(crate) async fn get_notification(
    Authenticated(principal): Authenticated,
    State(state): State<NotificationsState>,
    Path(id): Path<Uuid>,
) -> Result<Data<NotificationDetail>, ApiError> {
    Ok(Data(visible(&state, &principal, id).await?))
}

/// Sends a failed notification again (admins): it becomes `pending` and a new delivery job
/// starts, with the channel's attempts and backoff.
#[utoipa::path(post, path = "/notifications/{id}/retry", tag = "notifications",
    params(("id" = Uuid, Path, description = "Notification id")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Pending again; `Location` is the notification", body = inline(platform::http::Envelope<NotificationView>)),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
        (status = 404, description = "No such notification", body = ErrorEnvelope),
        (status = 409, description = "`invalid_transition`: not failed; `endpoint_disabled` or `endpoint_deleted`: the webhook endpoint is disabled or gone", body = ErrorEnvelope),
    ))]
pub(crate) async fn retry_notification(
    AdminOnly(admin): AdminOnly,
    State(state): State<NotificationsState>,
    ctx: RequestContext,
    Path(id): Path<Uuid>,
) -> Result<Created<NotificationView>, ApiError> {
    let row = state
        .service
        .send_again(id, None, Again::Retry, ctx.metadata(Some(admin.subject.clone())))
        .await
        .map_err(retry_error)?;
    Ok(Created::accepted(format!("/api/v1/notifications/{id}"), row.into()))
}

pub(crate) fn retry_error(error: RetryError) -> ApiError {
    match error {
        RetryError::NotFound => ApiError::not_found("The notification"),
        RetryError::Transition(error) => {
            ApiError::conflict("invalid_transition", format!("{}.", capitalise(&error.to_string())))
                .with_details(serde_json::json!({ "status": error.from }))
        }
        RetryError::EndpointDisabled => ApiError::conflict(
            "endpoint_disabled",
            "The webhook endpoint is disabled; enable it first (POST /api/v1/webhook-endpoints/{id}/enable).",
        ),
        RetryError::EndpointDeleted => {
            ApiError::conflict("endpoint_deleted", "The webhook endpoint was deleted; nothing can be delivered to it.")
        }
        RetryError::Unexpected(error) => ApiError::internal(error),
    }
}

fn capitalise(sentence: &str) -> String {
    let mut chars = sentence.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}
