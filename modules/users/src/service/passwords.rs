//! Changing a password while signed in.

use secrecy::{ExposeSecret, SecretString};
use users_contract::UserId;
use uuid::Uuid;

use super::{ProfileError, UsersService};
use crate::domain::Email;
use crate::store::accounts;
use crate::store::sessions::{self, RevokeReason};

impl UsersService {
    /// Checks the current password, sets the new one and ends every other session (the one
    /// making the change, `current_session`, stays signed in).
    ///
    /// # Errors
    /// [`ProfileError::Invalid`] for a wrong current password or a new one that breaks the
    /// policy or equals the current one.
    #[tracing::instrument(skip_all, fields(user_id = %user), err(level = "info"))]
    pub(crate) async fn change_password(
        &self,
        user: UserId,
        current_session: Option<Uuid>,
        current: &SecretString,
        new: &SecretString,
    ) -> Result<(), ProfileError> {
        let now = self.now();
        let account = accounts::find(&mut *self.pool.acquire().await?, user).await?.ok_or(ProfileError::NotFound)?;
        if !account.is_active() {
            return Err(ProfileError::Deactivated);
        }
        self.confirm_password(&account, current, "current_password").await?;
        if current.expose_secret() == new.expose_secret() {
            return Err(ProfileError::Invalid(super::field(
                "new_password",
                "unchanged",
                "must differ from the current password",
            )));
        }
        let email = Email::parse(&account.email).ok();
        let password = self
            .policy
            .check(new, email.as_ref())
            .map_err(|r| ProfileError::Invalid(super::password("new_password", r)))?;
        let hash = self.hashing.hash(&password).await?;
        let mut tx = self.pool.begin().await?;
        accounts::set_password(&mut tx, user, &hash, now).await?;
        let ended = sessions::revoke_all(&mut tx, user, current_session, RevokeReason::PasswordChanged, now).await?;
        let sessions_ended = ended.len();
        let metadata = super::access::by_user(user.0, "password_changed");
        let change = self.record_access_change(&mut tx, &account, ended, now, &metadata).await?;
        tx.commit().await?;
        self.enforce(&change);
        tracing::info!(sessions_ended, "password changed");
        Ok(())
    }
}
