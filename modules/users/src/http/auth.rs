//! Registration, sign-in, token refresh, sign-out, email verification and password reset.

use axum::extract::State;
use axum::http::StatusCode;
use platform::http::{ApiError, Created, Data, ErrorEnvelope, Json, RequestContext};
use secrecy::ExposeSecret;
use tracing::Instrument;

use super::UsersState;
use super::dto::{
    Accepted, LinkTokenRequest, LoginRequest, PasswordResetConfirmation, PasswordResetRequest, RefreshRequest,
    RegisterRequest, TokenResponse, UserView,
};
use crate::service::{self, Registration};

/// Creates a customer account. The email is not verified yet: a verification link is sent.
/// A retried registration answers 409 `email_taken`.
#[utoipa::path(post, path = "/users", tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered; `Location` is the account", body = inline(platform::http::Envelope<UserView>),
            headers(("Location" = String, description = "/api/v1/users/{id}"))),
        (status = 409, description = "An account with this email exists (`email_taken`), compared case-insensitively", body = ErrorEnvelope),
        (status = 422, description = "Invalid email, display name or password (too short, too long, too common); `details` per field", body = ErrorEnvelope),
    ))]
pub(crate) async fn register(
    State(state): State<UsersState>,
    ctx: RequestContext,
    Json(body): Json<RegisterRequest>,
) -> Result<Created<UserView>, ApiError> {
    let registration = Registration { email: body.email, password: body.password, display_name: body.display_name };
    let account = state.service.register(registration, &ctx).await?;
    Ok(Created::new(format!("/api/v1/users/{}", account.id), UserView::from(account)))
}

/// Signs in. Wrong email and wrong password answer identically; repeated failures back off
/// per account and per client address (429 with `Retry-After`).
#[utoipa::path(post, path = "/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = inline(platform::http::Envelope<TokenResponse>)),
        (status = 422, description = "A body that is not the documented JSON (`invalid_json`, `validation_failed`)", body = ErrorEnvelope),
        (status = 401, description = "`invalid_credentials`: the email or password is wrong", body = ErrorEnvelope),
        (status = 403, description = "`account_deactivated` (right password, closed account)", body = ErrorEnvelope),
        (status = 429, description = "Too many failed sign-ins; `Retry-After` says when to try again", body = ErrorEnvelope,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub(crate) async fn login(
    State(state): State<UsersState>,
    ctx: RequestContext,
    Json(body): Json<LoginRequest>,
) -> Result<Data<TokenResponse>, ApiError> {
    let tokens =
        state.service.login(service::LoginRequest { email: body.email, password: body.password }, &ctx).await?;
    Ok(Data(tokens.into()))
}

/// Exchanges a refresh token for new tokens. Each refresh token works once: presenting a used
/// one again ends its whole session (it must have leaked).
#[utoipa::path(post, path = "/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New access and refresh tokens", body = inline(platform::http::Envelope<TokenResponse>)),
        (status = 422, description = "A body that is not the documented JSON (`invalid_json`, `validation_failed`)", body = ErrorEnvelope),
        (status = 401, description = "`invalid_refresh_token` (unknown, expired, revoked) or `refresh_token_reused` (session ended)", body = ErrorEnvelope),
    ))]
pub(crate) async fn refresh(
    State(state): State<UsersState>,
    Json(body): Json<RefreshRequest>,
) -> Result<Data<TokenResponse>, ApiError> {
    Ok(Data(state.service.refresh(body.refresh_token.expose_secret()).await?.into()))
}

/// Signs out: ends the session of the refresh token. Answers 204 for unknown tokens too.
/// Access tokens already issued stay valid until they expire (at most 15 minutes).
#[utoipa::path(post, path = "/auth/logout", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 204, description = "The session is over"),
        (status = 422, description = "A body that is not the documented JSON", body = ErrorEnvelope),
    ))]
pub(crate) async fn logout(
    State(state): State<UsersState>,
    Json(body): Json<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    state.service.logout(body.refresh_token.expose_secret()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Confirms an email address with the token of the link sent to it.
#[utoipa::path(post, path = "/auth/email-verification", tag = "auth",
    request_body = LinkTokenRequest,
    responses(
        (status = 204, description = "Verified"),
        (status = 422, description = "`invalid_link`: unknown, expired, used or replaced by a newer link", body = ErrorEnvelope),
    ))]
pub(crate) async fn verify_email(
    State(state): State<UsersState>,
    ctx: RequestContext,
    Json(body): Json<LinkTokenRequest>,
) -> Result<StatusCode, ApiError> {
    state.service.verify_email(body.token.expose_secret(), &ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Asks for a password-reset link. Always 202, whether or not the address has an account.
#[utoipa::path(post, path = "/auth/password-reset", tag = "auth",
    request_body = PasswordResetRequest,
    responses(
        (status = 202, description = "If the account exists, a link is on its way", body = inline(platform::http::Envelope<Accepted>)),
        (status = 422, description = "A body that is not the documented JSON", body = ErrorEnvelope),
    ))]
pub(crate) async fn request_password_reset(
    State(state): State<UsersState>,
    ctx: RequestContext,
    Json(body): Json<PasswordResetRequest>,
) -> Result<(StatusCode, Data<Accepted>), ApiError> {
    // The work runs after the answer, so the answer takes as long for an unknown address as
    // for a known one (no enumeration by timing).
    let service = state.service.clone();
    let work = async move {
        if let Err(error) = service.request_password_reset(&body.email, &ctx).await {
            tracing::error!(error = %format!("{error:#}"), "opening a password reset failed");
        }
    };
    tokio::spawn(work.instrument(tracing::Span::current()));
    let message = "If an account exists for this address, a reset link is on its way.".to_owned();
    Ok((StatusCode::ACCEPTED, Data(Accepted { message })))
}

/// Sets a new password with the token of a reset link; every session of the account ends.
#[utoipa::path(post, path = "/auth/password-reset/confirm", tag = "auth",
    request_body = PasswordResetConfirmation,
    responses(
        (status = 204, description = "Password changed; sign in again"),
        (status = 422, description = "`invalid_link`, or `validation_failed` for a password that breaks the policy (the link still works)", body = ErrorEnvelope),
    ))]
pub(crate) async fn reset_password(
    State(state): State<UsersState>,
    Json(body): Json<PasswordResetConfirmation>,
) -> Result<StatusCode, ApiError> {
    state.service.reset_password(body.token.expose_secret(), &body.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}
