//! The events the users module publishes (`users.*`), versioned. Payloads carry ids, never
//! secrets: a verification or reset link is minted through [`crate::UsersApi::action_link`]
//! when its message is sent (ADR 0008). Every payload has an insta snapshot below, so a
//! change to the wire shape fails a test.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared_kernel::Role;
use shared_kernel::event::EventRef;
use shared_kernel::keyed_event;

use crate::{ActionRequestId, Preferences, UserId};

/// What a user's access tokens may still carry, after a change of roles, status or sessions:
/// every token verifier reads it (ADR 0020). Its type lives in the shared kernel, where the
/// verifier can read it without depending on this contract.
pub use shared_kernel::access::AccessChanged;

/// Someone registered. Their email is not yet verified; `verification_request` names the
/// request whose link the welcome message carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRegistered {
    pub user_id: UserId,
    pub verification_request: ActionRequestId,
    pub registered_at: DateTime<Utc>,
}

keyed_event!(UserRegistered, "users.user_registered", user_id);

/// A user asked for a new verification link (the previous one is no longer valid).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailVerificationRequested {
    pub user_id: UserId,
    pub request_id: ActionRequestId,
    pub requested_at: DateTime<Utc>,
}

keyed_event!(EmailVerificationRequested, "users.email_verification_requested", user_id);

/// A user proved they own their email address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailVerified {
    pub user_id: UserId,
    pub verified_at: DateTime<Utc>,
}

keyed_event!(EmailVerified, "users.email_verified", user_id);

/// A password reset was requested for an existing, active account. (Requests for unknown
/// addresses answer the same over HTTP but publish nothing.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordResetRequested {
    pub user_id: UserId,
    pub request_id: ActionRequestId,
    pub requested_at: DateTime<Utc>,
}

keyed_event!(PasswordResetRequested, "users.password_reset_requested", user_id);

/// Who closed an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeactivatedBy {
    /// The user closed their own account.
    User,
    Admin,
}

/// An account was deactivated (soft-deleted): it can no longer sign in, and its sessions were
/// revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDeactivated {
    pub user_id: UserId,
    pub by: DeactivatedBy,
    pub deactivated_at: DateTime<Utc>,
}

keyed_event!(UserDeactivated, "users.user_deactivated", user_id);

/// An admin reopened a deactivated account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserReactivated {
    pub user_id: UserId,
    pub reactivated_at: DateTime<Utc>,
}

keyed_event!(UserReactivated, "users.user_reactivated", user_id);

/// An admin changed a user's roles (effective from their next token refresh).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolesChanged {
    pub user_id: UserId,
    pub roles: Vec<Role>,
    pub changed_at: DateTime<Utc>,
}

keyed_event!(RolesChanged, "users.roles_changed", user_id);

/// A user changed their notification preferences; `preferences` is the whole new set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreferencesChanged {
    pub user_id: UserId,
    pub preferences: Preferences,
    pub changed_at: DateTime<Utc>,
}

keyed_event!(PreferencesChanged, "users.preferences_changed", user_id);

/// Every event type the users module publishes, for its manifest.
pub const PUBLISHED: [EventRef; 9] = [
    EventRef::of::<UserRegistered>(),
    EventRef::of::<EmailVerificationRequested>(),
    EventRef::of::<EmailVerified>(),
    EventRef::of::<PasswordResetRequested>(),
    EventRef::of::<UserDeactivated>(),
    EventRef::of::<UserReactivated>(),
    EventRef::of::<RolesChanged>(),
    EventRef::of::<PreferencesChanged>(),
    EventRef::of::<AccessChanged>(),
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use chrono::TimeZone;
    use uuid::Uuid;

    use shared_kernel::event::wire;

    use super::*;

    fn user() -> UserId {
        UserId(Uuid::from_u128(0x0193_b5f2_8a4e_7c3d_9a51_3f0c_2b6d_7e81))
    }

    fn request() -> ActionRequestId {
        ActionRequestId(Uuid::from_u128(0x0193_b5f2_9b00_7000_8000_0000_0000_0001))
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 9, 30, 0).unwrap()
    }

    /// Snapshots the wire form of one event, with its type and version.

    #[test]
    fn payloads_keep_their_wire_shape() {
        insta::assert_json_snapshot!(
            "user_registered",
            wire(&UserRegistered { user_id: user(), verification_request: request(), registered_at: at() })
        );
        insta::assert_json_snapshot!(
            "email_verification_requested",
            wire(&EmailVerificationRequested { user_id: user(), request_id: request(), requested_at: at() })
        );
        insta::assert_json_snapshot!("email_verified", wire(&EmailVerified { user_id: user(), verified_at: at() }));
        insta::assert_json_snapshot!(
            "password_reset_requested",
            wire(&PasswordResetRequested { user_id: user(), request_id: request(), requested_at: at() })
        );
        insta::assert_json_snapshot!(
            "user_deactivated",
            wire(&UserDeactivated { user_id: user(), by: DeactivatedBy::Admin, deactivated_at: at() })
        );
        insta::assert_json_snapshot!(
            "user_reactivated",
            wire(&UserReactivated { user_id: user(), reactivated_at: at() })
        );
        insta::assert_json_snapshot!(
            "roles_changed",
            wire(&RolesChanged { user_id: user(), roles: vec![Role::Customer, Role::Admin], changed_at: at() })
        );
        insta::assert_json_snapshot!(
            "access_changed",
            wire(&AccessChanged {
                user_id: user().0,
                active: true,
                roles: vec![Role::Customer],
                ended_sessions: vec![Uuid::from_u128(0x0193_b5f2_9c00_7000_8000_0000_0000_0002)],
                changed_at: at(),
                tokens_expire_by: at() + chrono::TimeDelta::minutes(15),
            })
        );
        insta::assert_json_snapshot!(
            "preferences_changed",
            wire(&PreferencesChanged { user_id: user(), preferences: Preferences::default(), changed_at: at() })
        );
    }

    #[test]
    fn readers_ignore_fields_they_do_not_know() {
        let payload = serde_json::json!({
            "user_id": user(), "verified_at": at(), "added_later": {"anything": true}
        });
        let event: EmailVerified = serde_json::from_value(payload).unwrap();
        assert_eq!(event, EmailVerified { user_id: user(), verified_at: at() });
    }

    #[test]
    fn transactional_email_cannot_be_switched_off() {
        let mut preferences = Preferences::default();
        preferences.email.transactional = false;
        preferences.webhook.transactional = false;
        assert!(preferences.allows(crate::Channel::Email, crate::Category::Transactional));
        assert!(!preferences.allows(crate::Channel::Webhook, crate::Category::Transactional));
        assert!(!preferences.allows(crate::Channel::Email, crate::Category::Marketing));
    }
}
