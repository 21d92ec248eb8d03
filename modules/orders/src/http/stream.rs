//! `GET /orders/{id}/events`: an order's status changes as Server-Sent Events. The history so
//! far comes first (or what follows `Last-Event-ID` when reconnecting), then each new status
//! as it is recorded; the stream ends after a final status. It reads the timeline table, so
//! it works on any replica whichever one moved the order. Every status change publishes an
//! event keyed by the order, so the stream reads again when the bus says one of this order's
//! events was sequenced (in any process on the database), and polls only when the bus's
//! notifications are lost.

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

/// How often an open stream looks for new statuses when no news arrives (the bus's
/// notifications are lost, or this process has no bus listening).
const POLL_EVERY: Duration = Duration::from_millis(500);
/// How long a stream that hears the bus's news waits before it looks anyway: a safety net.
const LOOK_ANYWAY: Duration = Duration::from_secs(15);
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
    let news = state.news.clone();
    let heard = news.as_ref().map(|wakeups| wakeups.sequenced_for_key("orders", &id.to_string()));
    let stream =
        futures::stream::unfold((resume_after, false, true, heard), move |(after, finished, first, mut heard)| {
            let (service, news) = (service.clone(), news.clone());
            async move {
                if finished {
                    return None;
                }
                if !first {
                    match heard.as_mut().filter(|_| news.as_ref().is_some_and(|n| n.listening())) {
                        Some(heard) => {
                            tokio::select! {
                                _ = heard.changed() => {}
                                () = tokio::time::sleep(LOOK_ANYWAY) => {}
                                () = tokio::time::sleep_until(deadline) => {}
                            }
                        }
                        None => tokio::time::sleep(POLL_EVERY).await,
                    }
                }
                if tokio::time::Instant::now() >= deadline {
                    return None;
                }
                // News from now on wakes the next wait, even if it comes while this read runs.
                if let Some(heard) = heard.as_mut() {
                    heard.borrow_and_update();
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
                    .filter_map(|entry| {
                        Event::default().event("status").id(entry.seq.to_string()).json_data(entry).ok()
                    })
                    .map(Ok)
                    .collect();
                Some((futures::stream::iter(events), (last, done, false, heard)))
            }
        });
    Ok(Sse::new(futures::StreamExt::flatten(stream)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
