//! The token signing keys: the public JWKS, and rotation for admins.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use platform::auth::AdminOnly;
use platform::http::{ApiError, Created, Data, ErrorEnvelope, Path};

use super::{UsersState, acting_admin};
use crate::keys::{KeyInfo, RetireError};

/// The public keys that verify access tokens (an RFC 7517 key set), newest first. Other
/// services verify tokens with these alone; cached for a minute.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "The key set", body = Object,
        example = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k", "use": "sig", "alg": "EdDSA"}]}))))]
pub(crate) async fn jwks(State(state): State<UsersState>) -> impl IntoResponse {
    // Short caching: verifiers see a rotation within a minute.
    ([(header::CACHE_CONTROL, "public, max-age=60")], axum::Json(state.service.keys.jwks()))
}

/// The signing keys, oldest first; the active one signs new tokens, all verify.
#[utoipa::path(get, path = "/auth/keys", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The keys", body = inline(platform::http::Envelope<Vec<KeyInfo>>)),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
    ))]
pub(crate) async fn list_keys(
    AdminOnly(admin): AdminOnly,
    State(state): State<UsersState>,
) -> Result<Data<Vec<KeyInfo>>, ApiError> {
    acting_admin(&state, &admin).await?;
    Ok(Data(state.service.keys.list()))
}

/// Rotates: a new key signs from now on; tokens signed by older keys keep verifying until
/// those keys are retired.
#[utoipa::path(post, path = "/auth/keys", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The new active key; `Location` is the key list", body = inline(platform::http::Envelope<KeyInfo>)),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
    ))]
pub(crate) async fn rotate_key(
    AdminOnly(admin): AdminOnly,
    State(state): State<UsersState>,
) -> Result<Created<KeyInfo>, ApiError> {
    acting_admin(&state, &admin).await?;
    let key = state.service.keys.rotate(state.service.now())?;
    Ok(Created::new("/api/v1/auth/keys", key))
}

/// Retires an old key: tokens it signed stop verifying. The active key cannot be retired.
#[utoipa::path(delete, path = "/auth/keys/{kid}", tag = "auth",
    params(("kid" = String, Path, description = "Key id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Retired"),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
        (status = 404, description = "No such key", body = ErrorEnvelope),
        (status = 409, description = "`active_key`: rotate first", body = ErrorEnvelope),
    ))]
pub(crate) async fn retire_key(
    AdminOnly(admin): AdminOnly,
    State(state): State<UsersState>,
    Path(kid): Path<String>,
) -> Result<StatusCode, ApiError> {
    acting_admin(&state, &admin).await?;
    match state.service.keys.retire(&kid) {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(RetireError::Unknown(_)) => Err(ApiError::not_found("The key")),
        Err(RetireError::Active(_)) => {
            Err(ApiError::conflict("active_key", "This key signs new tokens; rotate before retiring it."))
        }
        Err(RetireError::Unexpected(error)) => Err(ApiError::internal(error)),
    }
}
