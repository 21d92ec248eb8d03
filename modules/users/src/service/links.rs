//! Email verification and password reset: a request is opened (and announced by an event),
//! its one-time link is minted when the message goes out (ADR 0008), and the link's token is
//! redeemed once.

use platform::bus;
use platform::http::RequestContext;
use secrecy::SecretString;
use users_contract::events::{EmailVerificationRequested, EmailVerified, PasswordResetRequested};
use users_contract::{ActionLink, ActionPurpose, ActionRequestId, UserId};

use super::registration::VERIFICATION_MINTABLE_FOR;
use super::{LinkError, UsersService, delta, hash_secret, new_secret};
use crate::domain::Email;
use crate::store::login_failures::{self, Scope};
use crate::store::sessions::{self, RevokeReason};
use crate::store::{accounts, action_requests};

/// A reset link may be minted up to an hour after it was asked for.
const RESET_MINTABLE_FOR: std::time::Duration = std::time::Duration::from_secs(3600);
/// Repeated reset requests within this window open no new request (no mail bombing).
const RESET_REQUEST_INTERVAL: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Why a link cannot be minted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MintError {
    #[error("the request cannot have a link")]
    Unavailable,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl UsersService {
    /// Asks for a new verification link for the signed-in user.
    ///
    /// # Errors
    /// [`LinkError::AlreadyVerified`], [`LinkError::NotFound`], [`LinkError::Deactivated`].
    #[tracing::instrument(skip_all, fields(user_id = %user), err(level = "info"))]
    pub(crate) async fn request_verification(
        &self,
        user: UserId,
        ctx: &RequestContext,
    ) -> Result<ActionRequestId, LinkError> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let account = accounts::find_for_update(&mut tx, user).await?.ok_or(LinkError::NotFound)?;
        if !account.is_active() {
            return Err(LinkError::Deactivated);
        }
        if account.email_verified_at.is_some() {
            return Err(LinkError::AlreadyVerified);
        }
        let request = action_requests::open(
            &mut tx,
            user,
            ActionPurpose::VerifyEmail,
            now,
            now + delta(VERIFICATION_MINTABLE_FOR),
        )
        .await?;
        let event = EmailVerificationRequested { user_id: user, request_id: request, requested_at: now };
        bus::append(&mut tx, &event, &ctx.metadata(Some(user.to_string()))).await?;
        tx.commit().await?;
        Ok(request)
    }

    /// Opens a password reset for the account of `email`, if there is an active one. The
    /// caller answers the same whether or not it exists.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, err)]
    pub(crate) async fn request_password_reset(&self, email: &str, ctx: &RequestContext) -> Result<(), LinkError> {
        let Ok(email) = Email::parse(email) else { return Ok(()) };
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let Some(account) = accounts::find_by_email(&mut tx, email.as_str()).await?.filter(|a| a.is_active()) else {
            return Ok(());
        };
        let latest = action_requests::latest_open(&mut tx, account.id, ActionPurpose::ResetPassword).await?;
        if latest.is_some_and(|at| now - at < RESET_REQUEST_INTERVAL) {
            tracing::info!(user_id = %account.id, "reset asked again within a minute; the open request stands");
            return Ok(());
        }
        let request = action_requests::open(
            &mut tx,
            account.id,
            ActionPurpose::ResetPassword,
            now,
            now + delta(RESET_MINTABLE_FOR),
        )
        .await?;
        let event = PasswordResetRequested { user_id: account.id, request_id: request, requested_at: now };
        bus::append(&mut tx, &event, &ctx.metadata(None)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Mints the link of an open request; expiry counts from now, and an earlier link of the
    /// same request stops working.
    ///
    /// # Errors
    /// [`MintError::Unavailable`] for unknown, used, superseded or too-old requests.
    #[tracing::instrument(skip_all, fields(request_id = %request), err(level = "info"))]
    pub(crate) async fn mint_link(&self, request: ActionRequestId) -> Result<ActionLink, MintError> {
        let now = self.now();
        let (token, hash) = new_secret();
        let expiry = |purpose| match purpose {
            ActionPurpose::VerifyEmail => now + delta(self.config.verification_link_ttl),
            ActionPurpose::ResetPassword => now + delta(self.config.reset_link_ttl),
        };
        let mut tx = self.pool.begin().await.map_err(anyhow::Error::from)?;
        let minted =
            action_requests::mint(&mut tx, request, &hash, now, expiry).await?.ok_or(MintError::Unavailable)?;
        tx.commit().await.map_err(anyhow::Error::from)?;
        let page = match minted.purpose {
            ActionPurpose::VerifyEmail => "verify-email",
            ActionPurpose::ResetPassword => "reset-password",
        };
        let url = format!("{}/{page}?token={token}", self.config.public_url.trim_end_matches('/'));
        Ok(ActionLink {
            request_id: request,
            user_id: minted.user_id,
            purpose: minted.purpose,
            url,
            token,
            expires_at: expiry(minted.purpose),
        })
    }

    /// Redeems a verification token.
    ///
    /// # Errors
    /// [`LinkError::InvalidLink`] for unknown, expired, used or superseded tokens.
    #[tracing::instrument(skip_all, err(level = "info"))]
    pub(crate) async fn verify_email(&self, token: &str, ctx: &RequestContext) -> Result<(), LinkError> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let user = action_requests::redeem(&mut tx, &hash_secret(token), ActionPurpose::VerifyEmail, now)
            .await?
            .ok_or(LinkError::InvalidLink)?;
        if accounts::mark_verified(&mut tx, user, now).await? {
            bus::append(
                &mut tx,
                &EmailVerified { user_id: user, verified_at: now },
                &ctx.metadata(Some(user.to_string())),
            )
            .await?;
        }
        tx.commit().await?;
        tracing::info!(user_id = %user, "email verified");
        Ok(())
    }

    /// Redeems a reset token: sets the new password and ends every session.
    ///
    /// # Errors
    /// [`LinkError::Invalid`] for a password that breaks the policy (the token is kept),
    /// [`LinkError::InvalidLink`] for a token that cannot be used.
    #[tracing::instrument(skip_all, err(level = "info"))]
    pub(crate) async fn reset_password(&self, token: &str, password: &SecretString) -> Result<(), LinkError> {
        let now = self.now();
        let hash = hash_secret(token);
        let mut tx = self.pool.begin().await?;
        let user = action_requests::redeem(&mut tx, &hash, ActionPurpose::ResetPassword, now)
            .await?
            .ok_or(LinkError::InvalidLink)?;
        let account = accounts::find_for_update(&mut tx, user).await?.ok_or(LinkError::InvalidLink)?;
        if !account.is_active() {
            return Err(LinkError::InvalidLink);
        }
        let email = Email::parse(&account.email).ok();
        // Rejected before commit, so the token stays usable for a better password.
        let password = self
            .policy
            .check(password, email.as_ref())
            .map_err(|r| LinkError::Invalid(super::password("new_password", r)))?;
        let password_hash = self.hashing.hash(&password).await?;
        accounts::set_password(&mut tx, user, &password_hash, now).await?;
        let ended = sessions::revoke_all(&mut tx, user, None, RevokeReason::PasswordReset, now).await?;
        let sessions_ended = ended.len();
        let metadata = super::access::by_user(user.0, "password_reset");
        let change = self.record_access_change(&mut tx, &account, ended, now, &metadata).await?;
        action_requests::close_all(&mut tx, user, ActionPurpose::ResetPassword, now).await?;
        // Whoever was guessing the old password has nothing left to guess; the owner may sign in.
        login_failures::clear(&mut tx, Scope::Account, &account.email).await?;
        tx.commit().await?;
        self.enforce(&change);
        tracing::info!(user_id = %user, sessions_ended, "password reset");
        Ok(())
    }
}
