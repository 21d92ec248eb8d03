//! The users use cases, one file each, on [`UsersService`]; it also implements the
//! [`users_contract::UsersApi`] port for callers in this process.

mod access;
mod admin;
mod bootstrap;
mod links;
mod passwords;
mod port;
mod profile;
mod registration;
mod sessions;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use platform::auth::JwtVerifier;
use platform::clock::Clock;
use platform::http::FieldError;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

pub(crate) use profile::{DeactivationError, ProfileChange};
pub(crate) use registration::Registration;
pub(crate) use sessions::{IssuedTokens, LoginRequest};

/// The listing's filter and keys, as handlers pass them on.
pub(crate) use crate::store::accounts::{ListFilter, ListKey, SORTABLE};

use crate::UsersConfig;
use crate::domain::{PasswordHashing, PasswordPolicy, PasswordRejection};
use crate::keys::KeyRing;

/// Everything the use cases share.
#[derive(Debug)]
pub(crate) struct UsersService {
    pub(crate) pool: PgPool,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) keys: KeyRing,
    pub(crate) verifier: JwtVerifier,
    pub(crate) config: UsersConfig,
    pub(crate) policy: PasswordPolicy,
    pub(crate) hashing: PasswordHashing,
}

impl UsersService {
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

/// Failures of signing in and of token refresh. They say as little as they can: a caller
/// cannot learn whether an email has an account.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthError {
    #[error("the email or password is wrong")]
    InvalidCredentials,
    #[error("too many failed sign-ins; retry after {0:?}")]
    Throttled(Duration),
    #[error("the account is deactivated")]
    Deactivated,
    #[error("the refresh token is unknown, expired or revoked")]
    InvalidRefreshToken,
    #[error("a refresh token was used twice; its session is revoked")]
    RefreshTokenReused,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Failures of registering.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RegistrationError {
    #[error("an account with this email exists")]
    EmailTaken,
    #[error("the request is not valid")]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Failures of a signed-in user's own account: reading and changing it, its password, closing it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProfileError {
    /// No account for the token's subject.
    #[error("no such user")]
    NotFound,
    #[error("the account is deactivated")]
    Deactivated,
    #[error("the request is not valid")]
    Invalid(Vec<FieldError>),
    /// Closing the account was refused.
    #[error(transparent)]
    Deactivation(#[from] DeactivationError),
    #[error("too many wrong passwords; retry after {0:?}")]
    Throttled(Duration),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Failures of the one-time links: asking for one, verifying an email, resetting a password.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("no such user")]
    NotFound,
    #[error("the account is deactivated")]
    Deactivated,
    #[error("the request is not valid")]
    Invalid(Vec<FieldError>),
    #[error("the link is invalid, expired or already used")]
    InvalidLink,
    #[error("the email address is already verified")]
    AlreadyVerified,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Failures of the admins' work on other accounts.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdminError {
    #[error("no such user")]
    NotFound,
    #[error("the request is not valid")]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    Conflict(&'static str),
    #[error("the system must keep at least one active admin")]
    LastAdmin,
    #[error("the caller is not an active admin")]
    NotAdmin,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// One failed field.
pub(crate) fn field(field: &str, code: &str, message: impl Into<String>) -> Vec<FieldError> {
    vec![FieldError { field: field.to_owned(), code: code.to_owned(), message: message.into() }]
}

/// A password the policy refuses, as a failed field.
pub(crate) fn password(field_name: &str, rejection: PasswordRejection) -> Vec<FieldError> {
    field(field_name, rejection.code(), rejection.to_string())
}

impl UsersService {
    /// Checks the password of a signed-in user (to change it, or to close the account), under
    /// the same backoff as sign-in: a stolen access token is no password oracle.
    pub(crate) async fn confirm_password(
        &self,
        account: &crate::domain::Account,
        password: &secrecy::SecretString,
        field: &str,
    ) -> Result<(), ProfileError> {
        use crate::store::login_failures::{self, Scope};
        let now = self.now();
        let mut db = self.pool.acquire().await?;
        if let Some(wait) = self.count_attempt(&mut db, Scope::Account, &account.email, now).await? {
            return Err(ProfileError::Throttled(wait));
        }
        drop(db);
        if !self.hashing.verify(password, Some(&account.password_hash)).await {
            return Err(ProfileError::Invalid(self::field(field, "incorrect", "is not the current password")));
        }
        login_failures::clear(&mut *self.pool.acquire().await?, Scope::Account, &account.email).await?;
        Ok(())
    }
}

macro_rules! unexpected_from_sqlx {
    ($($error:ty),*) => {$(
        impl From<sqlx::Error> for $error {
            fn from(error: sqlx::Error) -> Self {
                Self::Unexpected(error.into())
            }
        }
    )*};
}

unexpected_from_sqlx!(RegistrationError, ProfileError, LinkError, AdminError, DeactivationError);

impl From<sqlx::Error> for AuthError {
    fn from(error: sqlx::Error) -> Self {
        Self::Unexpected(error.into())
    }
}

/// A fresh 256-bit secret, URL-safe, and the SHA-256 it is stored as.
pub(crate) fn new_secret() -> (String, Vec<u8>) {
    let secret = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let hash = hash_secret(&secret);
    (secret, hash)
}

/// Secrets are high-entropy, so a plain SHA-256 (no salt, no stretching) is the right store.
pub(crate) fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

pub(crate) fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}
