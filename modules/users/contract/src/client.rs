//! The users port for processes that do not host users: [`UsersApi`] over the module's
//! internal HTTP API. Transport failures become [`UsersError::Unavailable`] and
//! [`UsersError::Timeout`], the module's refusals the error cases they stand for, so callers
//! behave the same in both topologies.

use std::sync::Arc;

use shared_kernel::port::CallContext;
use shared_kernel::port::remote::{RemoteCall, RemoteError, Transport, call_as};

use crate::internal_api::{self, ADMINS, LINK_UNAVAILABLE, USER_NOT_FOUND};
use crate::{ActionLink, ActionRequestId, Contact, UserId, UsersApi, UsersError};

/// [`UsersApi`] served by another process.
#[derive(Debug, Clone)]
pub struct UsersClient {
    transport: Arc<dyn Transport>,
}

impl UsersClient {
    /// A client sending its calls through `transport` (pointed at the users process).
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        Self { transport }
    }
}

#[async_trait::async_trait]
impl UsersApi for UsersClient {
    async fn contact(&self, ctx: &CallContext, user: UserId) -> Result<Contact, UsersError> {
        let call = RemoteCall::get("contact", internal_api::contact(user));
        call_as(self.transport.as_ref(), ctx, call).await.map_err(|error| match error {
            RemoteError::Refused { code, .. } if code == USER_NOT_FOUND => UsersError::UserNotFound(user),
            other => into_error(other),
        })
    }

    async fn admins(&self, ctx: &CallContext) -> Result<Vec<Contact>, UsersError> {
        call_as(self.transport.as_ref(), ctx, RemoteCall::get("admins", ADMINS)).await.map_err(into_error)
    }

    async fn action_link(&self, ctx: &CallContext, request: ActionRequestId) -> Result<ActionLink, UsersError> {
        // Minting replaces the request's previous link, so a retry after a lost answer would
        // not be the same call: sent once, never repeated by the transport.
        let call = RemoteCall::post("action_link", internal_api::action_link(request), &())
            .map_err(into_error)?
            .idempotent(false);
        call_as(self.transport.as_ref(), ctx, call).await.map_err(|error| match error {
            RemoteError::Refused { code, .. } if code == LINK_UNAVAILABLE => UsersError::LinkUnavailable(request),
            other => into_error(other),
        })
    }
}

fn into_error(error: RemoteError) -> UsersError {
    match error {
        RemoteError::Unavailable(reason) => UsersError::Unavailable(reason),
        RemoteError::Timeout => UsersError::Timeout,
        refused @ (RemoteError::Refused { .. } | RemoteError::Invalid(_)) => {
            UsersError::Unexpected(refused.to_string())
        }
    }
}
