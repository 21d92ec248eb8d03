//! What admins do to accounts: list, read, change roles, deactivate and reactivate.

use platform::auth::Role;
use platform::bus;
use platform::http::{Page, PageRequest, RequestContext};
use users_contract::UserId;
use users_contract::events::{DeactivatedBy, RolesChanged, UserReactivated};

use super::{AdminError, UsersService};
use crate::domain::{Account, RolesChange};
use crate::store::accounts::{self, ListFilter, ListKey};

impl UsersService {
    /// Re-reads the acting admin: a token's roles may be up to 15 minutes old, and a demoted
    /// or deactivated admin's token must not act (nor undo its own demotion).
    ///
    /// # Errors
    /// [`AdminError::NotAdmin`].
    pub(crate) async fn ensure_admin(&self, admin: UserId) -> Result<(), AdminError> {
        let account = accounts::find(&mut *self.pool.acquire().await?, admin).await?;
        match account {
            Some(account) if account.is_active() && account.is_admin() => Ok(()),
            _ => Err(AdminError::NotAdmin),
        }
    }

    /// One page of accounts matching `filter`.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) async fn list_users(
        &self,
        filter: &ListFilter,
        page: &PageRequest<ListKey>,
    ) -> Result<Page<Account>, AdminError> {
        let rows = accounts::list(&mut *self.pool.acquire().await?, filter, page).await?;
        Ok(Page::from_overfetch(rows, page, |account| accounts::list_key(account, &page.sort)))
    }

    /// # Errors
    /// [`AdminError::NotFound`].
    pub(crate) async fn user(&self, user: UserId) -> Result<Account, AdminError> {
        accounts::find(&mut *self.pool.acquire().await?, user).await?.ok_or(AdminError::NotFound)
    }

    /// Replaces a user's roles; they take effect at the user's next token refresh.
    ///
    /// # Errors
    /// [`AdminError::Invalid`] (no role), [`AdminError::LastAdmin`], [`AdminError::NotFound`].
    #[tracing::instrument(skip_all, fields(user_id = %user), err(level = "info"))]
    pub(crate) async fn set_roles(
        &self,
        user: UserId,
        roles: Vec<Role>,
        admin: UserId,
        ctx: &RequestContext,
    ) -> Result<Account, AdminError> {
        let change = RolesChange::parse(roles).map_err(|m| AdminError::Invalid(super::field("roles", "length", m)))?;
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let mut account = accounts::find_for_update(&mut tx, user).await?.ok_or(AdminError::NotFound)?;
        if change.demotes(&account) && account.is_active() && accounts::other_active_admins(&mut tx, user).await? == 0 {
            return Err(AdminError::LastAdmin);
        }
        let mut access_change = None;
        if account.roles != change.roles {
            accounts::set_roles(&mut tx, user, &change.roles, now).await?;
            let metadata = ctx.metadata(Some(admin.to_string()));
            let event = RolesChanged { user_id: user, roles: change.roles.clone(), changed_at: now };
            bus::append(&mut tx, &event, &metadata).await?;
            account.roles = change.roles;
            account.updated_at = now;
            access_change = Some(self.record_access_change(&mut tx, &account, Vec::new(), now, &metadata).await?);
        }
        tx.commit().await?;
        if let Some(change) = &access_change {
            self.enforce(change);
        }
        Ok(account)
    }

    /// # Errors
    /// [`AdminError::Conflict`] when already deactivated, [`AdminError::LastAdmin`].
    pub(crate) async fn deactivate_user(
        &self,
        user: UserId,
        admin: UserId,
        ctx: &RequestContext,
    ) -> Result<Account, AdminError> {
        self.deactivate(user, DeactivatedBy::Admin, admin, ctx).await?;
        self.user(user).await
    }

    /// Reopens a deactivated account (its old sessions stay ended; the user signs in again).
    ///
    /// # Errors
    /// [`AdminError::Conflict`] when the account is active.
    #[tracing::instrument(skip_all, fields(user_id = %user), err(level = "info"))]
    pub(crate) async fn reactivate_user(
        &self,
        user: UserId,
        admin: UserId,
        ctx: &RequestContext,
    ) -> Result<Account, AdminError> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let account = accounts::find_for_update(&mut tx, user).await?.ok_or(AdminError::NotFound)?;
        let status = account.status.reactivate().map_err(AdminError::Conflict)?;
        accounts::set_status(&mut tx, user, status, now).await?;
        let metadata = ctx.metadata(Some(admin.to_string()));
        let event = UserReactivated { user_id: user, reactivated_at: now };
        bus::append(&mut tx, &event, &metadata).await?;
        // The account may act again; its old sessions stay ended (they were listed when it closed).
        let reopened = Account { status, ..account };
        let change = self.record_access_change(&mut tx, &reopened, Vec::new(), now, &metadata).await?;
        tx.commit().await?;
        self.enforce(&change);
        self.user(user).await
    }
}
