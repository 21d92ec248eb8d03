//! `GET /orders/{id}/events`: an order's status changes as Server-Sent Events. The history so
//! far comes first (or what follows `Last-Event-ID` when reconnecting), then each new status
//! as it is recorded; the stream ends after a final status. It reads the timeline table, so
//! it works on any replica whichever one moved the order.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use platform::auth::Authenticated;
use platform::http::{ApiError, ErrorEnvelope, Path};
use uuid::Uuid;

use super::OrdersState;

/// How often an open stream looks for new statuses.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// A stream ends after this long; clients reconnect with `Last-Event-ID` (EventSource does so
/// by itself), which bounds what a forgotten tab costs.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// Streams the order's status changes (`event: status`, `id`: position in its history, data:
/// a timeline entry). Reconnect with `Last-Event-ID` to resume. For its customer or an admin.
#[utoipa::path(get, path = "/orders/{id}/events", tag = "orders",
    params(
        ("id" = Uuid, Path, description = "Order id"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`text/event-stream` of timeline entries", content_type = "text/event-stream", body = String,
            example = json!("event: status\nid: 12\ndata: {\"at\":\"2026-11-21T09:30:02Z\",\"status\":\"awaiting_payment\",\"cause_kind\":\"event\",\"cause_id\":\"0193b5f2-9b00-7000-8000-000000000001\",\"reason\":null}\n\n")),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 404, description = "No such order, or not yours", body = ErrorEnvelope),
    ))]
pub(crate) async fn order_events(
    Authenticated(principal): Authenticated,
    State(state): State<OrdersState>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    match state.service.order_owner(id).await? {
        Some(owner) if principal.is_admin() || principal.subject == owner.to_string() => {}
        _ => return Err(ApiError::not_found("The order")),
    }
    let deadline = tokio::time::Instant::now() + MAX_LIFETIME;
    let resume_after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0);
    let service = state.service.clone();
    let stream = futures::stream::unfold((resume_after, false, true), move |(after, finished, first)| {
        let service = service.clone();
        async move {
            if finished {
                return None;
            }
            if !first {
                tokio::time::sleep(POLL_EVERY).await;
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            let (entries, settled) = service.timeline_since(id, after).await.unwrap_or_else(|error| {
                tracing::warn!(error = %format!("{error:#}"), "reading an order's timeline for its stream");
                (Vec::new(), false)
            });
            let last = entries.last().map_or(after, |e| e.seq);
            // Final, and nothing left to send (also when reconnecting after the end).
            let done = settled;
            let events: Vec<Result<Event, Infallible>> = entries
                .iter()
                .filter_map(|entry| Event::default().event("status").id(entry.seq.to_string()).json_data(entry).ok())
                .map(Ok)
                .collect();
            Some((futures::stream::iter(events), (last, done, false)))
        }
    });
    Ok(Sse::new(futures::StreamExt::flatten(stream)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
