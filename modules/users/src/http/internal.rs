//! The server side of the users port (`/internal/users/v1`, `users_contract::internal_api`),
//! for processes that do not host users: the same service in-process callers use. The app
//! mounts it behind service tokens, so only the modules in `users_contract::CALLERS` get here.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use platform::http::{ApiError, Data, Envelope, ErrorEnvelope, Path};
use platform::remote::PortCall;
use users_contract::internal_api::{LINK_UNAVAILABLE, USER_NOT_FOUND};
use users_contract::{ActionLink, ActionRequestId, Contact, UserId, UsersApi, UsersError};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The internal routes, relative to `/internal/users/v1`.
pub(crate) fn router(port: Arc<dyn UsersApi>) -> OpenApiRouter {
    OpenApiRouter::new().routes(routes!(contact)).routes(routes!(admins)).routes(routes!(action_link)).with_state(port)
}

/// How to reach a user ([`UsersApi::contact`]).
#[utoipa::path(get, path = "/users/{id}/contact", tag = "users port",
    params(("id" = Uuid, Path, description = "The user")),
    responses(
        (status = 200, description = "The user's contact details", body = inline(Envelope<Contact>)),
        (status = 401, description = "No valid service token", body = ErrorEnvelope),
        (status = 403, description = "The calling module does not declare this port", body = ErrorEnvelope),
        (status = 404, description = "No such user (`user_not_found`)", body = ErrorEnvelope),
    ))]
async fn contact(
    State(port): State<Arc<dyn UsersApi>>,
    PortCall(ctx): PortCall,
    Path(id): Path<Uuid>,
) -> Result<Data<Contact>, ApiError> {
    Ok(Data(port.contact(&ctx, UserId(id)).await.map_err(into_api_error)?))
}

/// Every active admin ([`UsersApi::admins`]).
#[utoipa::path(get, path = "/admins", tag = "users port",
    responses(
        (status = 200, description = "The active admins, oldest account first", body = inline(Envelope<Vec<Contact>>)),
        (status = 401, description = "No valid service token", body = ErrorEnvelope),
        (status = 403, description = "The calling module does not declare this port", body = ErrorEnvelope),
    ))]
async fn admins(
    State(port): State<Arc<dyn UsersApi>>,
    PortCall(ctx): PortCall,
) -> Result<Data<Vec<Contact>>, ApiError> {
    Ok(Data(port.admins(&ctx).await.map_err(into_api_error)?))
}

/// Mints a verification or reset request's one-time link ([`UsersApi::action_link`]).
#[utoipa::path(post, path = "/action-requests/{id}/link", tag = "users port",
    params(("id" = Uuid, Path, description = "The verification or reset request")),
    responses(
        (status = 200, description = "A fresh link; the request's previous one stops working", body = inline(Envelope<ActionLink>)),
        (status = 401, description = "No valid service token", body = ErrorEnvelope),
        (status = 403, description = "The calling module does not declare this port", body = ErrorEnvelope),
        (status = 410, description = "The request is used, superseded or too old (`link_unavailable`)", body = ErrorEnvelope),
    ))]
async fn action_link(
    State(port): State<Arc<dyn UsersApi>>,
    PortCall(ctx): PortCall,
    Path(id): Path<Uuid>,
) -> Result<Data<ActionLink>, ApiError> {
    Ok(Data(port.action_link(&ctx, ActionRequestId(id)).await.map_err(into_api_error)?))
}

fn into_api_error(error: UsersError) -> ApiError {
    match error {
        UsersError::UserNotFound(user) => {
            ApiError::new(StatusCode::NOT_FOUND, USER_NOT_FOUND, format!("There is no user {user}."))
        }
        UsersError::LinkUnavailable(request) => ApiError::new(
            StatusCode::GONE,
            LINK_UNAVAILABLE,
            format!("The link of request {request} can no longer be issued."),
        ),
        UsersError::Unavailable(reason) => ApiError::unavailable(
            "users_unavailable",
            "The users module cannot answer now.",
            std::time::Duration::from_secs(1),
        )
        .with_source(anyhow::anyhow!(reason)),
        UsersError::Timeout => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", "No answer in time."),
        UsersError::Unexpected(reason) => ApiError::internal(anyhow::anyhow!(reason)),
    }
}
