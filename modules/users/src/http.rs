//! The users HTTP API: `/auth/…` (sign-in, tokens, links), `/users/me…` (the caller's own
//! account), `/users…` and `/auth/keys…` for admins, and the JWKS at the root.

mod admin;
mod auth;
mod dto;
mod internal;
mod keys;
mod me;

use std::sync::Arc;

use axum::extract::FromRef;
use axum::http::StatusCode;
use platform::auth::{JwtVerifier, Principal};
use platform::http::ApiError;
use users_contract::UserId;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::service::{
    AdminError, AuthError, DeactivationError, LinkError, ProfileError, RegistrationError, UsersService,
};

pub(crate) use internal::router as internal_router;

/// What the handlers share.
#[derive(Debug, Clone)]
pub(crate) struct UsersState {
    pub(crate) service: Arc<UsersService>,
}

impl FromRef<UsersState> for JwtVerifier {
    fn from_ref(state: &UsersState) -> Self {
        state.service.verifier.clone()
    }
}

/// The public routes, relative to `/api/v1`.
pub(crate) fn router(service: Arc<UsersService>) -> OpenApiRouter {
    // Registration takes no Idempotency-Key: the key's record fingerprints the body, which
    // would keep a fast hash of the password. A retried registration answers 409 instead.
    let state = UsersState { service };
    OpenApiRouter::new()
        .routes(routes!(auth::register))
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::verify_email))
        .routes(routes!(auth::request_password_reset))
        .routes(routes!(auth::reset_password))
        .routes(routes!(me::get_me, me::update_me))
        .routes(routes!(me::change_password))
        .routes(routes!(me::resend_verification))
        .routes(routes!(me::deactivate_me))
        .routes(routes!(admin::list_users))
        .routes(routes!(admin::get_user))
        .routes(routes!(admin::set_roles))
        .routes(routes!(admin::deactivate_user))
        .routes(routes!(admin::reactivate_user))
        .routes(routes!(keys::list_keys, keys::rotate_key))
        .routes(routes!(keys::retire_key))
        .with_state(state)
}

/// Routes at the root: the JWKS other services verify tokens with.
pub(crate) fn well_known(service: Arc<UsersService>) -> OpenApiRouter {
    OpenApiRouter::new().routes(routes!(keys::jwks)).with_state(UsersState { service })
}

/// The caller's user id: the token's subject. Tokens not issued to an account here (no UUID
/// subject) cannot use account routes.
pub(crate) fn user_of(principal: &Principal) -> Result<UserId, ApiError> {
    principal.subject.parse().map(UserId).map_err(|_| ApiError::invalid_token())
}

/// The acting admin's id, after checking the account still is an active admin.
pub(crate) async fn acting_admin(state: &UsersState, principal: &Principal) -> Result<UserId, ApiError> {
    let admin = user_of(principal)?;
    state.service.ensure_admin(admin).await?;
    Ok(admin)
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::InvalidCredentials => {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", "The email or password is wrong.")
            }
            AuthError::Throttled(wait) => ApiError::rate_limited(wait).with_details(serde_json::json!({
                "reason": "Too many failed sign-ins; wait before trying again."
            })),
            AuthError::Deactivated => {
                ApiError::new(StatusCode::FORBIDDEN, "account_deactivated", "This account has been deactivated.")
            }
            AuthError::InvalidRefreshToken => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_refresh_token",
                "The refresh token is unknown, expired or revoked; sign in again.",
            ),
            AuthError::RefreshTokenReused => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "refresh_token_reused",
                "This refresh token was already used; its session has been ended. Sign in again.",
            ),
            AuthError::Unexpected(source) => ApiError::internal(source),
        }
    }
}

impl From<RegistrationError> for ApiError {
    fn from(error: RegistrationError) -> Self {
        match error {
            RegistrationError::EmailTaken => {
                ApiError::conflict("email_taken", "An account with this email address already exists.")
            }
            RegistrationError::Invalid(fields) => ApiError::validation(fields),
            RegistrationError::Unexpected(source) => ApiError::internal(source),
        }
    }
}

impl From<ProfileError> for ApiError {
    fn from(error: ProfileError) -> Self {
        match error {
            ProfileError::NotFound => user_not_found(),
            ProfileError::Deactivated => deactivated(),
            ProfileError::Invalid(fields) => ApiError::validation(fields),
            ProfileError::Deactivation(refusal) => refusal.into(),
            ProfileError::Throttled(wait) => ApiError::rate_limited(wait).with_details(serde_json::json!({
                "reason": "Too many wrong passwords; wait before trying again."
            })),
            ProfileError::Unexpected(source) => ApiError::internal(source),
        }
    }
}

impl From<DeactivationError> for ApiError {
    fn from(error: DeactivationError) -> Self {
        match error {
            DeactivationError::NotFound => user_not_found(),
            DeactivationError::Conflict(message) => invalid_transition(message),
            DeactivationError::LastAdmin => last_admin(),
            DeactivationError::Unexpected(source) => ApiError::internal(source),
        }
    }
}

impl From<LinkError> for ApiError {
    fn from(error: LinkError) -> Self {
        match error {
            LinkError::NotFound => user_not_found(),
            LinkError::Deactivated => deactivated(),
            LinkError::Invalid(fields) => ApiError::validation(fields),
            LinkError::InvalidLink => ApiError::unprocessable(
                "invalid_link",
                "The link is invalid, has expired or was already used; ask for a new one.",
            ),
            LinkError::AlreadyVerified => {
                ApiError::conflict("already_verified", "The email address is already verified.")
            }
            LinkError::Unexpected(source) => ApiError::internal(source),
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(error: AdminError) -> Self {
        match error {
            AdminError::NotFound => user_not_found(),
            AdminError::Invalid(fields) => ApiError::validation(fields),
            AdminError::Conflict(message) => invalid_transition(message),
            AdminError::LastAdmin => last_admin(),
            AdminError::NotAdmin => ApiError::forbidden(),
            AdminError::Unexpected(source) => ApiError::internal(source),
        }
    }
}

fn user_not_found() -> ApiError {
    ApiError::not_found("The user")
}

fn deactivated() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "account_deactivated", "This account has been deactivated.")
}

fn invalid_transition(message: &str) -> ApiError {
    ApiError::conflict("invalid_transition", capitalise(message))
}

fn last_admin() -> ApiError {
    ApiError::conflict("last_admin", "This would leave no active admin; make another user an admin first.")
}

fn capitalise(message: &str) -> String {
    let mut chars = message.chars();
    chars.next().map(|first| format!("{}{}.", first.to_uppercase(), chars.as_str())).unwrap_or_default()
}
