//! The caller's own account.

use axum::extract::State;
use axum::http::StatusCode;
use platform::auth::Authenticated;
use platform::http::{ApiError, Data, ErrorEnvelope, Json, RequestContext};
use uuid::Uuid;

use super::dto::{Accepted, ChangePasswordRequest, PasswordConfirmation, UpdateMeRequest, UserView};
use super::{UsersState, user_of};
use crate::service::ProfileChange;

/// The signed-in user's account, with their notification preferences.
#[utoipa::path(get, path = "/users/me", tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The account", body = inline(platform::http::Envelope<UserView>)),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "`account_deactivated`", body = ErrorEnvelope),
    ))]
pub(crate) async fn get_me(
    Authenticated(principal): Authenticated,
    State(state): State<UsersState>,
) -> Result<Data<UserView>, ApiError> {
    let account = state.service.me(user_of(&principal)?).await.map_err(unknown_subject)?;
    Ok(Data(account.into()))
}

/// Changes the display name and notification preferences (per channel and category;
/// transactional email stays on). A preferences change is published.
#[utoipa::path(patch, path = "/users/me", tag = "users",
    security(("bearer" = [])),
    request_body = UpdateMeRequest,
    responses(
        (status = 200, description = "The updated account", body = inline(platform::http::Envelope<UserView>)),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "`account_deactivated`", body = ErrorEnvelope),
        (status = 422, description = "Invalid display name, or transactional email turned off", body = ErrorEnvelope),
    ))]
pub(crate) async fn update_me(
    Authenticated(principal): Authenticated,
    State(state): State<UsersState>,
    ctx: RequestContext,
    Json(body): Json<UpdateMeRequest>,
) -> Result<Data<UserView>, ApiError> {
    let change = ProfileChange { display_name: body.display_name, preferences: body.preferences.map(Into::into) };
    let account = state.service.update_profile(user_of(&principal)?, change, &ctx).await.map_err(unknown_subject)?;
    Ok(Data(account.into()))
}

/// Changes the password. Needs the current one; every other session ends, this one stays.
#[utoipa::path(post, path = "/users/me/password", tag = "users",
    security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses(
        (status = 204, description = "Changed"),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "`account_deactivated`", body = ErrorEnvelope),
        (status = 422, description = "Wrong current password, or a new one that breaks the policy", body = ErrorEnvelope),
    ))]
pub(crate) async fn change_password(
    Authenticated(principal): Authenticated,
    State(state): State<UsersState>,
    Json(body): Json<ChangePasswordRequest>,
) -> Result<StatusCode, ApiError> {
    let session = principal.session.as_deref().and_then(|s| s.parse::<Uuid>().ok());
    state
        .service
        .change_password(user_of(&principal)?, session, &body.current_password, &body.new_password)
        .await
        .map_err(unknown_subject)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a new verification link (earlier links stop working).
#[utoipa::path(post, path = "/users/me/email-verification", tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "A new link is on its way", body = inline(platform::http::Envelope<Accepted>)),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "`account_deactivated`", body = ErrorEnvelope),
        (status = 409, description = "`already_verified`", body = ErrorEnvelope),
    ))]
pub(crate) async fn resend_verification(
    Authenticated(principal): Authenticated,
    State(state): State<UsersState>,
    ctx: RequestContext,
) -> Result<(StatusCode, Data<Accepted>), ApiError> {
    state.service.request_verification(user_of(&principal)?, &ctx).await.map_err(|error| match error {
        crate::service::LinkError::NotFound => ApiError::invalid_token(),
        other => other.into(),
    })?;
    Ok((StatusCode::ACCEPTED, Data(Accepted { message: "A new verification link is on its way.".to_owned() })))
}

/// Closes the caller's own account (a soft delete): it can no longer sign in, and every
/// session ends. Needs the password.
#[utoipa::path(post, path = "/users/me/deactivate", tag = "users",
    security(("bearer" = [])),
    request_body = PasswordConfirmation,
    responses(
        (status = 204, description = "Deactivated"),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "`account_deactivated` already", body = ErrorEnvelope),
        (status = 409, description = "`last_admin`: the only active admin cannot leave", body = ErrorEnvelope),
        (status = 422, description = "Wrong password", body = ErrorEnvelope),
    ))]
pub(crate) async fn deactivate_me(
    Authenticated(principal): Authenticated,
    State(state): State<UsersState>,
    ctx: RequestContext,
    Json(body): Json<PasswordConfirmation>,
) -> Result<StatusCode, ApiError> {
    state.service.deactivate_self(user_of(&principal)?, &body.password, &ctx).await.map_err(unknown_subject)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A valid token whose subject has no account here is as good as no token for these routes.
fn unknown_subject(error: crate::service::ProfileError) -> ApiError {
    match error {
        crate::service::ProfileError::NotFound
        | crate::service::ProfileError::Deactivation(crate::service::DeactivationError::NotFound) => {
            ApiError::invalid_token()
        }
        other => other.into(),
    }
}
