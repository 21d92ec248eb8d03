//! The users port over HTTP: the paths and error codes of the internal API
//! (`/internal/users/v1`), shared by the server in the users module and the
//! [`client`](crate::client), so the two cannot drift apart.

use crate::{ActionRequestId, UserId};

/// `GET`: how to reach a user ([`crate::UsersApi::contact`]); answers a [`crate::Contact`].
pub fn contact(user: UserId) -> String {
    format!("/users/{user}/contact")
}

/// The route template of [`contact`].
pub const CONTACT: &str = "/users/{id}/contact";

/// `GET`: every active admin ([`crate::UsersApi::admins`]); answers a list of
/// [`crate::Contact`].
pub const ADMINS: &str = "/admins";

/// `POST`: mints a request's one-time link ([`crate::UsersApi::action_link`]); answers an
/// [`crate::ActionLink`].
pub fn action_link(request: ActionRequestId) -> String {
    format!("/action-requests/{request}/link")
}

/// The route template of [`action_link`].
pub const ACTION_LINK: &str = "/action-requests/{id}/link";

/// The error code of [`crate::UsersError::UserNotFound`] (with 404).
pub const USER_NOT_FOUND: &str = "user_not_found";

/// The error code of [`crate::UsersError::LinkUnavailable`] (with 410).
pub const LINK_UNAVAILABLE: &str = "link_unavailable";
