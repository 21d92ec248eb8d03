//! The bus's admin API (mounted by `app` under `/api/v1`): subscription status, dead
//! letters, replay and rewind, for admins only.

use axum::extract::{FromRef, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::runtime::{Bus, DeadLetter, PartitionStatus, ReplayError, RewindError, RewindTarget};
use crate::auth::{AdminOnly, JwtVerifier};
use crate::http::pagination::{PageMeta, PageQuery};
use crate::http::{ApiError, Data, ErrorEnvelope, Json, Page, Path, Query};

/// What the admin handlers need.
#[derive(Debug, Clone)]
pub struct AdminState {
    pub bus: Bus,
    pub verifier: JwtVerifier,
}

impl FromRef<AdminState> for JwtVerifier {
    fn from_ref(state: &AdminState) -> Self {
        state.verifier.clone()
    }
}

/// The routes, relative to `/api/v1`.
pub fn router(state: AdminState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list_subscriptions))
        .routes(routes!(list_dead_letters))
        .routes(routes!(replay_dead_letter))
        .routes(routes!(rewind_subscription))
        .with_state(state)
}

/// Every partition of every subscription this process hosts: cursor, owner, lag, failures.
#[utoipa::path(get, path = "/admin/bus/subscriptions", tag = "bus",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One entry per subscription partition", body = inline(crate::http::Envelope<Vec<PartitionStatus>>)),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
    ))]
async fn list_subscriptions(
    _: AdminOnly,
    State(state): State<AdminState>,
) -> Result<Data<Vec<PartitionStatus>>, ApiError> {
    Ok(Data(state.bus.status().await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeadLetterQuery {
    /// Only this subscription's.
    subscription: Option<String>,
    /// Include letters already replayed (default: only those waiting).
    #[serde(default)]
    include_replayed: bool,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `meta.next_cursor` of the previous page.
    after: Option<String>,
}

/// The body of a dead-letter page.
#[derive(Debug, Serialize, ToSchema)]
struct DeadLetterPage {
    data: Vec<DeadLetter>,
    meta: PageMeta,
}

/// Dead letters, oldest first, with their last error.
#[utoipa::path(get, path = "/admin/bus/dead-letters", tag = "bus",
    params(DeadLetterQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of dead letters", body = DeadLetterPage),
        (status = 400, description = "Bad limit or cursor", body = ErrorEnvelope),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
    ))]
async fn list_dead_letters(
    _: AdminOnly,
    State(state): State<AdminState>,
    Query(query): Query<DeadLetterQuery>,
) -> Result<Page<DeadLetter>, ApiError> {
    let page = PageQuery { limit: query.limit, after: query.after, sort: None }
        .parse::<(DateTime<Utc>, Uuid)>(&["dead_lettered_at"], "dead_lettered_at")?;
    let letters = state
        .bus
        .dead_letters(query.subscription.as_deref(), query.include_replayed, page.after, page.limit as usize + 1)
        .await?;
    Ok(Page::from_overfetch(letters, &page, |l| (l.dead_lettered_at, l.id)))
}

/// Runs a dead letter's event through its handler again. On success the handler's effects
/// commit with the letter's `replayed_at`; a letter is replayed at most once.
#[utoipa::path(post, path = "/admin/bus/dead-letters/{id}/replay", tag = "bus",
    params(("id" = Uuid, Path, description = "Dead letter id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Replayed", body = inline(crate::http::Envelope<DeadLetter>)),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
        (status = 404, description = "No such dead letter here", body = ErrorEnvelope),
        (status = 409, description = "Already replayed", body = ErrorEnvelope),
        (status = 422, description = "The handler failed again; `details.error` says why", body = ErrorEnvelope),
    ))]
async fn replay_dead_letter(
    _: AdminOnly,
    State(state): State<AdminState>,
    Path(id): Path<Uuid>,
) -> Result<Data<DeadLetter>, ApiError> {
    match state.bus.replay(id).await {
        Ok(letter) => Ok(Data(letter)),
        Err(ReplayError::NotFound(_)) => Err(ApiError::not_found("The dead letter")),
        Err(ReplayError::AlreadyReplayed(_)) => {
            Err(ApiError::conflict("already_replayed", "This dead letter was already replayed."))
        }
        Err(error @ ReplayError::NoHandler(_)) => Err(ApiError::unprocessable("no_handler", error.to_string())),
        Err(ReplayError::Failed(cause)) => Err(ApiError::unprocessable("replay_failed", "The handler failed again.")
            .with_details(serde_json::json!({ "error": cause }))),
        Err(ReplayError::Unexpected(error)) => Err(ApiError::internal(error)),
    }
}

/// Where to resume: exactly one of the two.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"to_position": 1200}))]
struct RewindRequest {
    /// The next event handled is the first at or after this position (≥ 1).
    to_position: Option<i64>,
    /// The next event handled is the first sequenced at or after this time.
    to_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Rewound {
    subscription: String,
    /// The cursor every partition was set to: handling resumes after it.
    position: i64,
}

/// Moves a subscription's cursors so history after the target is delivered again.
#[utoipa::path(post, path = "/admin/bus/subscriptions/{name}/rewind", tag = "bus",
    params(("name" = String, Path, description = "Subscription name, e.g. inventory.reserve_stock")),
    request_body = RewindRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Rewound", body = inline(crate::http::Envelope<Rewound>)),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
        (status = 404, description = "No such subscription here", body = ErrorEnvelope),
        (status = 422, description = "Neither or both targets, or a position below 1", body = ErrorEnvelope),
    ))]
async fn rewind_subscription(
    _: AdminOnly,
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Json(request): Json<RewindRequest>,
) -> Result<Data<Rewound>, ApiError> {
    let target = match (request.to_position, request.to_time) {
        (Some(position), None) if position >= 1 => RewindTarget::Position(position),
        (None, Some(time)) => RewindTarget::Time(time),
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_rewind_target",
                "Give exactly one of to_position (at least 1) and to_time.",
            ));
        }
    };
    match state.bus.rewind(&name, target).await {
        Ok(position) => Ok(Data(Rewound { subscription: name, position })),
        Err(RewindError::UnknownSubscription(_)) => Err(ApiError::not_found("The subscription")),
        Err(RewindError::Unexpected(error)) => Err(ApiError::internal(error)),
    }
}
