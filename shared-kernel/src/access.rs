//! What a user's access tokens may still carry. The users module publishes
//! [`AccessChanged`] whenever a user's access changes (roles replaced, account closed or
//! reopened, sessions ended), in the transaction of the change; every process's token
//! verifier applies it and refuses tokens that claim more than that (ADR 0020). It lives in
//! the shared kernel because the verifier (platform) reads it and must not depend on a
//! module's contract.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Role;
use crate::keyed_event;

/// A user's access after a change: a token of `user_id` is refused while this is remembered
/// if the account is not `active`, if it claims a role outside `roles`, or if it names (as
/// `sid`) one of the `ended_sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessChanged {
    pub user_id: Uuid,
    /// Whether the account may act at all (false: deactivated).
    pub active: bool,
    /// Every role the user holds now.
    pub roles: Vec<Role>,
    /// Sessions that ended with this change (logout, password change, deactivation, a
    /// reused refresh token); their tokens are refused whatever they claim.
    #[serde(default)]
    pub ended_sessions: Vec<Uuid>,
    pub changed_at: DateTime<Utc>,
    /// Every access token issued before the change has expired by then: after it the
    /// change need not be remembered (new tokens already carry the new access).
    pub tokens_expire_by: DateTime<Utc>,
}

keyed_event!(AccessChanged, "users.access_changed", user_id);
