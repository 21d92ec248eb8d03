//! Webhook endpoints and their deliveries (admins only).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use platform::auth::AdminOnly;
use platform::http::pagination::PageMeta;
use platform::http::{
    ApiError, Created, Data, ErrorEnvelope, FieldError, Json, Page, PageQuery, Path, Query, RequestContext,
};
use secrecy::ExposeSecret;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::dto::{
    AttemptView, CreateEndpointRequest, CreatedEndpoint, EndpointView, ListDeliveriesQuery, NotificationDetail,
    NotificationView,
};
use super::notifications::retry_error;
use super::{NotificationsState, user_of};
use crate::domain::Channel;
use crate::domain::targets::TargetError;
use crate::service::{
    Again, CreateEndpoint, CreateEndpointError, Created as Registered, ENDPOINTS_SORTABLE, EndpointListKey,
    EndpointRow, ListFilter, ListKey, SORTABLE,
};
use crate::subscriptions::EVENT_TYPES;

const MAX_URL: usize = 2000;
const MAX_DESCRIPTION: usize = 200;

/// Registers an endpoint for some event types (admins). The answer carries the signing
/// secret, shown this once. `Idempotency-Key` is required: a retry with the same key and body
/// within 24 hours answers with the same endpoint (and secret); another body is 422; a key
/// whose endpoint was deleted, or older than 24 hours, is 409.
#[utoipa::path(post, path = "/webhook-endpoints", tag = "webhooks",
    request_body = CreateEndpointRequest,
    params(("Idempotency-Key" = String, Header, description = "Required; the same key replays the first answer")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Registered; `Location` is the endpoint", body = inline(platform::http::Envelope<CreatedEndpoint>),
            headers(("Location" = String, description = "/api/v1/webhook-endpoints/{id}"))),
        (status = 400, description = "`idempotency_key_required` or `invalid_idempotency_key`", body = ErrorEnvelope),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
        (status = 409, description = "`endpoint_deleted`: the key registered an endpoint since deleted; `idempotency_key_expired`: the key is more than 24 hours old, so its answer (and secret) is not replayed", body = ErrorEnvelope),
        (status = 422, description = "`validation_failed` (per field in `details`; a URL of a private, loopback or link-local address is refused here) or `idempotency_key_reused`", body = ErrorEnvelope),
    ))]
pub(crate) async fn create_endpoint(
    AdminOnly(admin): AdminOnly,
    State(state): State<NotificationsState>,
    headers: HeaderMap,
    Json(body): Json<CreateEndpointRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let request = validate(user_of(&admin)?, key, body)?;
    let registered = state.service.create_endpoint(request).await.map_err(create_error)?;
    let (endpoint, replayed) = match &registered {
        Registered::New(endpoint) => (endpoint, false),
        Registered::Again(endpoint) => (endpoint, true),
    };
    let created = CreatedEndpoint { endpoint: endpoint.into(), secret: endpoint.secret().expose_secret().to_owned() };
    let mut response = Created::new(format!("/api/v1/webhook-endpoints/{}", endpoint.id), created).into_response();
    if replayed {
        response.headers_mut().insert(HeaderName::from_static("idempotent-replayed"), HeaderValue::from_static("true"));
    }
    Ok(response)
}

fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Err(ApiError::bad_request(
            "idempotency_key_required",
            "This endpoint needs an Idempotency-Key header (a unique value per operation, e.g. a UUID).",
        ));
    };
    value.to_str().ok().filter(|key| (1..=255).contains(&key.len())).map(str::to_owned).ok_or_else(|| {
        ApiError::bad_request("invalid_idempotency_key", "Idempotency-Key must be 1 to 255 visible ASCII characters.")
    })
}

fn validate(
    created_by: Uuid,
    idempotency_key: String,
    body: CreateEndpointRequest,
) -> Result<CreateEndpoint, ApiError> {
    let mut errors = Vec::new();
    let mut field = |field: &str, code: &str, message: String| {
        errors.push(FieldError { field: field.to_owned(), code: code.to_owned(), message });
    };
    let url = body.url.trim().to_owned();
    if url.is_empty() || url.len() > MAX_URL {
        field("url", "length", format!("must be 1 to {MAX_URL} characters"));
    } else if let Err(error) = crate::domain::targets::parse_url(&url) {
        field("url", "invalid", format!("{error}"));
    }
    let description = body.description.map(|d| d.trim().to_owned()).filter(|d| !d.is_empty());
    if description.as_ref().is_some_and(|d| d.chars().count() > MAX_DESCRIPTION) {
        field("description", "length", format!("must be at most {MAX_DESCRIPTION} characters"));
    }
    let mut event_types: Vec<String> = Vec::new();
    // Checked before the items, so a huge list costs one error, not one per entry.
    let asked = if body.event_types.is_empty() || body.event_types.len() > EVENT_TYPES.len() {
        field("event_types", "length", format!("must name 1 to {} event types", EVENT_TYPES.len()));
        Vec::new()
    } else {
        body.event_types
    };
    for (index, event_type) in asked.into_iter().enumerate() {
        if !EVENT_TYPES.iter().any(|known| known.event_type == event_type) {
            field(
                &format!("event_types[{index}]"),
                "unknown_event_type",
                format!("must be one of: {}", EVENT_TYPES.map(|known| known.event_type).join(", ")),
            );
        } else if !event_types.contains(&event_type) {
            event_types.push(event_type);
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    event_types.sort();
    Ok(CreateEndpoint { url, description, event_types, created_by, idempotency_key })
}

fn create_error(error: CreateEndpointError) -> ApiError {
    match error {
        CreateEndpointError::Target(error) => {
            let code = match error {
                TargetError::NotPublic(_) => "not_public",
                TargetError::Unresolvable(_) => "unresolvable",
                _ => "invalid",
            };
            ApiError::validation(vec![FieldError {
                field: "url".to_owned(),
                code: code.to_owned(),
                message: error.to_string(),
            }])
        }
        CreateEndpointError::KeyReused => ApiError::unprocessable(
            "idempotency_key_reused",
            "This Idempotency-Key was already used with a different request.",
        ),
        CreateEndpointError::Deleted => ApiError::conflict(
            "endpoint_deleted",
            "The endpoint this Idempotency-Key registered was deleted; register anew with a new key.",
        ),
        CreateEndpointError::KeyExpired => ApiError::conflict(
            "idempotency_key_expired",
            "This Idempotency-Key is more than 24 hours old and its answer is no longer replayed; \
             the endpoint exists (list it without its secret), or register anew with a new key.",
        ),
        CreateEndpointError::Unexpected(error) => ApiError::internal(error),
    }
}

/// A page of endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EndpointPage {
    data: Vec<EndpointView>,
    meta: PageMeta,
}

/// Lists the registered endpoints, newest first (admins). Secrets are not shown.
#[utoipa::path(get, path = "/webhook-endpoints", tag = "webhooks",
    params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of endpoints", body = EndpointPage),
        (status = 400, description = "Bad limit, sort or cursor", body = ErrorEnvelope),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
    ))]
pub(crate) async fn list_endpoints(
    AdminOnly(_admin): AdminOnly,
    State(state): State<NotificationsState>,
    Query(query): Query<PageQuery>,
) -> Result<Page<EndpointView>, ApiError> {
    let page = query.parse::<EndpointListKey>(ENDPOINTS_SORTABLE, "-created_at")?;
    Ok(state.service.list_endpoints(&page).await?.map(|row| EndpointView::from(&row)))
}

async fn endpoint(state: &NotificationsState, id: Uuid) -> Result<EndpointRow, ApiError> {
    state.service.endpoint(id).await?.ok_or_else(|| ApiError::not_found("The webhook endpoint"))
}

/// One endpoint (admins). Its secret is not shown.
#[utoipa::path(get, path = "/webhook-endpoints/{id}", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Endpoint id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The endpoint", body = inline(platform::http::Envelope<EndpointView>)),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
        (status = 404, description = "No such endpoint", body = ErrorEnvelope),
    ))]
pub(crate) async fn get_endpoint(
    AdminOnly(_admin): AdminOnly,
    State(state): State<NotificationsState>,
    Path(id): Path<Uuid>,
) -> Result<Data<EndpointView>, ApiError> {
    Ok(Data(EndpointView::from(&endpoint(&state, id).await?)))
}

/// Deletes an endpoint (admins): nothing more is delivered to it; its deliveries stay
/// listed in the admins' notification listing.
#[utoipa::path(delete, path = "/webhook-endpoints/{id}", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Endpoint id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
        (status = 404, description = "No such endpoint", body = ErrorEnvelope),
    ))]
pub(crate) async fn delete_endpoint(
    AdminOnly(admin): AdminOnly,
    State(state): State<NotificationsState>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    if !state.service.delete_endpoint(id).await? {
        return Err(ApiError::not_found("The webhook endpoint"));
    }
    tracing::info!(endpoint_id = %id, admin = %admin.subject, "webhook endpoint deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Turns a disabled endpoint back on, its failure count cleared (admins). Deliveries that
/// failed meanwhile can be redelivered.
#[utoipa::path(post, path = "/webhook-endpoints/{id}/enable", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Endpoint id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Enabled", body = inline(platform::http::Envelope<EndpointView>)),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
        (status = 404, description = "No such endpoint", body = ErrorEnvelope),
    ))]
pub(crate) async fn enable_endpoint(
    AdminOnly(_admin): AdminOnly,
    State(state): State<NotificationsState>,
    Path(id): Path<Uuid>,
) -> Result<Data<EndpointView>, ApiError> {
    if !state.service.enable_endpoint(id).await? {
        return Err(ApiError::not_found("The webhook endpoint"));
    }
    Ok(Data(EndpointView::from(&endpoint(&state, id).await?)))
}

/// A page of deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveryPage {
    data: Vec<NotificationView>,
    meta: PageMeta,
}

/// Lists an endpoint's deliveries, newest first (admins), by status and event type.
#[utoipa::path(get, path = "/webhook-endpoints/{id}/deliveries", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Endpoint id"), ListDeliveriesQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of deliveries", body = DeliveryPage),
        (status = 400, description = "Bad limit, sort, cursor or filter", body = ErrorEnvelope),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
        (status = 404, description = "No such endpoint", body = ErrorEnvelope),
    ))]
pub(crate) async fn list_deliveries(
    AdminOnly(_admin): AdminOnly,
    State(state): State<NotificationsState>,
    Path(id): Path<Uuid>,
    Query(query): Query<ListDeliveriesQuery>,
) -> Result<Page<NotificationView>, ApiError> {
    endpoint(&state, id).await?;
    let page = PageQuery { limit: query.limit, after: query.after, sort: query.sort }
        .parse::<ListKey>(SORTABLE, "-created_at")?;
    let filter = ListFilter {
        user_id: None,
        endpoint_id: Some(id),
        status: query.status,
        channel: Some(Channel::Webhook),
        event_type: query.event_type,
    };
    Ok(state.service.list_notifications(&filter, &page).await?.map(NotificationView::from))
}

/// One delivery with every attempt: status, response code, latency and error (admins).
#[utoipa::path(get, path = "/webhook-endpoints/{id}/deliveries/{delivery_id}", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Endpoint id"), ("delivery_id" = Uuid, Path, description = "Delivery (notification) id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The delivery", body = inline(platform::http::Envelope<NotificationDetail>)),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
        (status = 404, description = "No such endpoint or delivery", body = ErrorEnvelope),
    ))]
pub(crate) async fn get_delivery(
    AdminOnly(_admin): AdminOnly,
    State(state): State<NotificationsState>,
    Path((id, delivery)): Path<(Uuid, Uuid)>,
) -> Result<Data<NotificationDetail>, ApiError> {
    let (row, attempts) = state
        .service
        .notification(delivery)
        .await?
        .filter(|(row, _)| row.endpoint_id == Some(id))
        .ok_or_else(|| ApiError::not_found("The delivery"))?;
    Ok(Data(NotificationDetail {
        notification: row.into(),
        delivery_attempts: attempts.into_iter().map(AttemptView::from).collect(),
    }))
}

/// Delivers again (admins): a failed delivery, or one delivered that the receiver lost. The
/// same body is sent with a fresh signature, as a new job with the usual retries.
#[utoipa::path(post, path = "/webhook-endpoints/{id}/deliveries/{delivery_id}/redeliver", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Endpoint id"), ("delivery_id" = Uuid, Path, description = "Delivery (notification) id")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Pending again", body = inline(platform::http::Envelope<NotificationView>)),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
        (status = 404, description = "No such endpoint or delivery", body = ErrorEnvelope),
        (status = 409, description = "`invalid_transition`: still pending or skipped; `endpoint_disabled`: enable the endpoint first; `endpoint_deleted`: the endpoint was deleted", body = ErrorEnvelope),
    ))]
pub(crate) async fn redeliver(
    AdminOnly(admin): AdminOnly,
    State(state): State<NotificationsState>,
    ctx: RequestContext,
    Path((id, delivery)): Path<(Uuid, Uuid)>,
) -> Result<Created<NotificationView>, ApiError> {
    let row = state
        .service
        .send_again(delivery, Some(id), Again::Redeliver, ctx.metadata(Some(admin.subject.clone())))
        .await
        .map_err(|error| match error {
            crate::service::RetryError::NotFound => ApiError::not_found("The delivery"),
            other => retry_error(other),
        })?;
    Ok(Created::accepted(format!("/api/v1/webhook-endpoints/{id}/deliveries/{delivery}"), row.into()))
}
