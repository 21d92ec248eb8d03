//! Request and response bodies, with the examples the OpenAPI document shows.

use chrono::{DateTime, Utc};
use platform::auth::Role;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use users_contract::{AccountStatus, Preferences, UserId};
use utoipa::{IntoParams, ToSchema};

use crate::domain::{Account, ChannelPatch, PreferencesPatch};
use crate::service::IssuedTokens;

/// An account as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "0193b5f2-8a4e-7c3d-9a51-3f0c2b6d7e81", "email": "ada@example.com", "display_name": "Ada Lovelace",
    "roles": ["customer"], "status": "active", "email_verified": false,
    "preferences": {"email": {"transactional": true, "marketing": false}, "webhook": {"transactional": true, "marketing": false}},
    "created_at": "2026-11-21T09:30:00Z", "updated_at": "2026-11-21T09:30:00Z"
}))]
pub(crate) struct UserView {
    pub(crate) id: UserId,
    /// Normalised: trimmed, lower case.
    pub(crate) email: String,
    pub(crate) display_name: String,
    pub(crate) roles: Vec<Role>,
    pub(crate) status: AccountStatus,
    pub(crate) email_verified: bool,
    pub(crate) preferences: Preferences,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

impl From<Account> for UserView {
    fn from(account: Account) -> Self {
        Self {
            id: account.id,
            email: account.email,
            display_name: account.display_name,
            roles: account.roles,
            status: account.status.public(),
            email_verified: account.email_verified_at.is_some(),
            preferences: account.preferences,
            created_at: account.created_at,
            updated_at: account.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "password": "analytical engine 1843", "display_name": "Ada Lovelace"}))]
pub(crate) struct RegisterRequest {
    /// Unique, compared case-insensitively.
    pub(crate) email: String,
    /// 12 to 128 characters, not one of the most common passwords, not containing the email.
    #[schema(value_type = String, format = Password, min_length = 12, max_length = 128)]
    pub(crate) password: SecretString,
    /// 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub(crate) display_name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "password": "analytical engine 1843"}))]
pub(crate) struct LoginRequest {
    pub(crate) email: String,
    #[schema(value_type = String, format = Password)]
    pub(crate) password: SecretString,
}

/// Tokens of a session. Send the access token as `Authorization: Bearer …`; exchange the
/// refresh token at `/auth/refresh` before it expires (each one works once).
#[derive(Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "access_token": "eyJhbGciOiJFZERTQSIsImtpZCI6IjN5dmtPUTdjazRLNXI2d0sxcWtxNHk4c0pYYTFRNmIxbDhpMGIxeDN5SmsifQ.eyJzdWIiOiIuLi4ifQ.c2lnbmF0dXJl",
    "token_type": "Bearer", "expires_in": 900,
    "refresh_token": "rt_q0R2g8b1mB7dYx5M4pZr3sT9uV6wX1yA2bC3dE4fG5h",
    "refresh_expires_at": "2026-12-05T09:30:00Z"
}))]
pub(crate) struct TokenResponse {
    /// EdDSA-signed JWT; its header names the signing key (`kid`, see `/.well-known/jwks.json`).
    pub(crate) access_token: String,
    pub(crate) token_type: String,
    /// Seconds until the access token expires.
    pub(crate) expires_in: u64,
    pub(crate) refresh_token: String,
    pub(crate) refresh_expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse").field("refresh_expires_at", &self.refresh_expires_at).finish_non_exhaustive()
    }
}

impl From<IssuedTokens> for TokenResponse {
    fn from(tokens: IssuedTokens) -> Self {
        Self {
            access_token: tokens.access_token,
            token_type: "Bearer".to_owned(),
            expires_in: tokens.access_expires_in.as_secs(),
            refresh_token: tokens.refresh_token,
            refresh_expires_at: tokens.refresh_expires_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"refresh_token": "rt_q0R2g8b1mB7dYx5M4pZr3sT9uV6wX1yA2bC3dE4fG5h"}))]
pub(crate) struct RefreshRequest {
    #[schema(value_type = String)]
    pub(crate) refresh_token: SecretString,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"token": "Jd8Qm1yqF0Vb2xk6R3tN7wZ9aL4cE5gH8jK1mP2sU3v"}))]
pub(crate) struct LinkTokenRequest {
    /// The `token` query parameter of the link in the email.
    #[schema(value_type = String)]
    pub(crate) token: SecretString,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com"}))]
pub(crate) struct PasswordResetRequest {
    pub(crate) email: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"token": "Jd8Qm1yqF0Vb2xk6R3tN7wZ9aL4cE5gH8jK1mP2sU3v", "new_password": "difference engine 1822"}))]
pub(crate) struct PasswordResetConfirmation {
    #[schema(value_type = String)]
    pub(crate) token: SecretString,
    #[schema(value_type = String, format = Password, min_length = 12, max_length = 128)]
    pub(crate) new_password: SecretString,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"current_password": "analytical engine 1843", "new_password": "difference engine 1822"}))]
pub(crate) struct ChangePasswordRequest {
    #[schema(value_type = String, format = Password)]
    pub(crate) current_password: SecretString,
    #[schema(value_type = String, format = Password, min_length = 12, max_length = 128)]
    pub(crate) new_password: SecretString,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"password": "analytical engine 1843"}))]
pub(crate) struct PasswordConfirmation {
    #[schema(value_type = String, format = Password)]
    pub(crate) password: SecretString,
}

/// Switches of one channel to change; absent ones stay.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChannelChange {
    pub(crate) transactional: Option<bool>,
    pub(crate) marketing: Option<bool>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PreferencesChange {
    #[serde(default)]
    pub(crate) email: ChannelChange,
    #[serde(default)]
    pub(crate) webhook: ChannelChange,
}

impl From<PreferencesChange> for PreferencesPatch {
    fn from(change: PreferencesChange) -> Self {
        let channel = |c: ChannelChange| ChannelPatch { transactional: c.transactional, marketing: c.marketing };
        Self { email: channel(change.email), webhook: channel(change.webhook) }
    }
}

/// Fields to change; absent ones stay. Transactional email cannot be turned off.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"display_name": "Ada King", "preferences": {"email": {"marketing": true}}}))]
pub(crate) struct UpdateMeRequest {
    pub(crate) display_name: Option<String>,
    pub(crate) preferences: Option<PreferencesChange>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"roles": ["customer", "admin"]}))]
pub(crate) struct SetRolesRequest {
    /// The complete new set; at least one.
    pub(crate) roles: Vec<Role>,
}

/// An accepted request whose effect follows by email.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"message": "If an account exists for this address, a reset link is on its way."}))]
pub(crate) struct Accepted {
    pub(crate) message: String,
}

/// Filters, sort and page of the admin user listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListUsersQuery {
    /// Only users with this role.
    pub(crate) role: Option<Role>,
    /// Only users with this status.
    pub(crate) status: Option<AccountStatus>,
    /// Only emails starting with this (case-insensitive).
    pub(crate) email_prefix: Option<String>,
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub(crate) limit: Option<u32>,
    /// `meta.next_cursor` of the previous page.
    pub(crate) after: Option<String>,
    /// `created_at` or `email`, `-` for descending; default `-created_at`.
    pub(crate) sort: Option<String>,
}
