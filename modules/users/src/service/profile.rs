//! The signed-in user's own account: read it, change name and preferences, close it.

use anyhow::Context;
use platform::bus;
use platform::http::RequestContext;
use secrecy::SecretString;
use users_contract::UserId;
use users_contract::events::{DeactivatedBy, PreferencesChanged, UserDeactivated};

use super::{AdminError, ProfileError, UsersService};
use crate::domain::{Account, DisplayName, PreferencesPatch};
use crate::store::accounts;
use crate::store::sessions::{self, RevokeReason};

/// What a user may change about themselves; absent fields stay as they are.
#[derive(Debug, Default)]
pub(crate) struct ProfileChange {
    pub(crate) display_name: Option<String>,
    pub(crate) preferences: Option<PreferencesPatch>,
}

impl UsersService {
    /// The caller's own account, if it is active.
    ///
    /// # Errors
    /// [`ProfileError::NotFound`] (no account for the token's subject), [`ProfileError::Deactivated`].
    pub(crate) async fn me(&self, user: UserId) -> Result<Account, ProfileError> {
        let account = accounts::find(&mut *self.pool.acquire().await?, user).await?.ok_or(ProfileError::NotFound)?;
        if account.is_active() { Ok(account) } else { Err(ProfileError::Deactivated) }
    }

    /// Changes the caller's display name and preferences; a preferences change is published.
    ///
    /// # Errors
    /// [`ProfileError::Invalid`] (e.g. turning transactional email off).
    #[tracing::instrument(skip_all, fields(user_id = %user), err(level = "info"))]
    pub(crate) async fn update_profile(
        &self,
        user: UserId,
        change: ProfileChange,
        ctx: &RequestContext,
    ) -> Result<Account, ProfileError> {
        let name = change
            .display_name
            .as_deref()
            .map(DisplayName::parse)
            .transpose()
            .map_err(|m| ProfileError::Invalid(super::field("display_name", "invalid", m)))?;
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let mut account = accounts::find_for_update(&mut tx, user).await?.ok_or(ProfileError::NotFound)?;
        if !account.is_active() {
            return Err(ProfileError::Deactivated);
        }
        let preferences = match change.preferences {
            Some(patch) => patch
                .apply(account.preferences)
                .map_err(|m| ProfileError::Invalid(super::field("preferences.email.transactional", "required", m)))?,
            None => account.preferences,
        };
        let preferences_changed = preferences != account.preferences;
        if let Some(name) = name {
            account.display_name = name.into_inner();
        }
        account.preferences = preferences;
        account.updated_at = now;
        accounts::update_profile(&mut tx, user, &account.display_name, &preferences, now).await?;
        if preferences_changed {
            let event = PreferencesChanged { user_id: user, preferences, changed_at: now };
            bus::append(&mut tx, &event, &ctx.metadata(Some(user.to_string()))).await?;
        }
        tx.commit().await?;
        Ok(account)
    }

    /// Closes the caller's own account after checking their password: it can no longer sign
    /// in, and every session ends.
    ///
    /// # Errors
    /// [`ProfileError::Invalid`] for a wrong password; [`ProfileError::Deactivation`] (the last admin).
    #[tracing::instrument(skip_all, fields(user_id = %user), err(level = "info"))]
    pub(crate) async fn deactivate_self(
        &self,
        user: UserId,
        password: &SecretString,
        ctx: &RequestContext,
    ) -> Result<(), ProfileError> {
        let account = self.me(user).await?;
        self.confirm_password(&account, password, "password").await?;
        Ok(self.deactivate(user, DeactivatedBy::User, user, ctx).await?)
    }

    /// Deactivates `user` on behalf of `actor`, refusing to remove the last active admin.
    pub(super) async fn deactivate(
        &self,
        user: UserId,
        by: DeactivatedBy,
        actor: UserId,
        ctx: &RequestContext,
    ) -> Result<(), DeactivationError> {
        let now = self.now();
        let mut tx = self.pool.begin().await.context("starting a deactivation")?;
        let account = accounts::find_for_update(&mut tx, user).await?.ok_or(DeactivationError::NotFound)?;
        let status = account.status.deactivate().map_err(DeactivationError::Conflict)?;
        if account.is_admin() && accounts::other_active_admins(&mut tx, user).await? == 0 {
            return Err(DeactivationError::LastAdmin);
        }
        accounts::set_status(&mut tx, user, status, now).await?;
        let ended = sessions::revoke_all(&mut tx, user, None, RevokeReason::Deactivated, now).await?;
        let sessions_ended = ended.len();
        let metadata = ctx.metadata(Some(actor.to_string()));
        let event = UserDeactivated { user_id: user, by, deactivated_at: now };
        bus::append(&mut tx, &event, &metadata).await?;
        let closed = crate::domain::Account { status, ..account };
        let change = self.record_access_change(&mut tx, &closed, ended, now, &metadata).await?;
        tx.commit().await.context("committing a deactivation")?;
        self.enforce(&change);
        tracing::info!(sessions_ended, ?by, "account deactivated");
        Ok(())
    }
}

/// Failures of deactivating an account, whoever asks (the user, or an admin).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeactivationError {
    #[error("no such user")]
    NotFound,
    #[error("{0}")]
    Conflict(&'static str),
    #[error("the system must keep at least one active admin")]
    LastAdmin,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<DeactivationError> for AdminError {
    fn from(error: DeactivationError) -> Self {
        match error {
            DeactivationError::NotFound => Self::NotFound,
            DeactivationError::Conflict(message) => Self::Conflict(message),
            DeactivationError::LastAdmin => Self::LastAdmin,
            DeactivationError::Unexpected(error) => Self::Unexpected(error),
        }
    }
}
