//! The users port for callers in this process.

use platform::port::CallContext;
use users_contract::{ActionLink, ActionRequestId, Contact, UserId, UsersApi, UsersError};

use super::UsersService;
use super::links::MintError;
use crate::domain::Account;
use crate::store::accounts;

#[async_trait::async_trait]
impl UsersApi for UsersService {
    #[tracing::instrument(skip_all, fields(user_id = %user, correlation_id = %ctx.correlation_id), err(level = "info"))]
    async fn contact(&self, ctx: &CallContext, user: UserId) -> Result<Contact, UsersError> {
        let unexpected = |e: anyhow::Error| UsersError::Unexpected(format!("{e:#}"));
        let mut db = self.pool.acquire().await.map_err(|e| UsersError::Unavailable(e.to_string()))?;
        let account = accounts::find(&mut db, user).await.map_err(unexpected)?.ok_or(UsersError::UserNotFound(user))?;
        Ok(contact_of(account))
    }

    #[tracing::instrument(skip_all, fields(correlation_id = %ctx.correlation_id), err(level = "info"))]
    async fn admins(&self, ctx: &CallContext) -> Result<Vec<Contact>, UsersError> {
        let mut db = self.pool.acquire().await.map_err(|e| UsersError::Unavailable(e.to_string()))?;
        let admins = accounts::active_admins(&mut db).await.map_err(|e| UsersError::Unexpected(format!("{e:#}")))?;
        Ok(admins.into_iter().map(contact_of).collect())
    }

    #[tracing::instrument(skip_all, fields(request_id = %request, correlation_id = %ctx.correlation_id), err(level = "info"))]
    async fn action_link(&self, ctx: &CallContext, request: ActionRequestId) -> Result<ActionLink, UsersError> {
        self.mint_link(request).await.map_err(|error| match error {
            MintError::Unavailable => UsersError::LinkUnavailable(request),
            MintError::Unexpected(e) => UsersError::Unexpected(format!("{e:#}")),
        })
    }
}

fn contact_of(account: Account) -> Contact {
    Contact {
        user_id: account.id,
        email: account.email,
        display_name: account.display_name,
        email_verified: account.email_verified_at.is_some(),
        status: account.status.public(),
        preferences: account.preferences,
    }
}
