//! An account and the rules that change it: status transitions, role changes that never
//! leave the system without an active admin, preferences that keep transactional email on.

use chrono::{DateTime, Utc};
use platform::auth::Role;
use users_contract::{AccountStatus, ChannelPreferences, Preferences, UserId};

/// Whether an account can sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Active,
    Deactivated,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Deactivated => "deactivated",
        }
    }

    pub(crate) fn parse(raw: &str) -> Option<Self> {
        match raw {
            "active" => Some(Self::Active),
            "deactivated" => Some(Self::Deactivated),
            _ => None,
        }
    }

    pub(crate) fn public(self) -> AccountStatus {
        match self {
            Self::Active => AccountStatus::Active,
            Self::Deactivated => AccountStatus::Deactivated,
        }
    }

    /// # Errors
    /// When the account is already deactivated.
    pub(crate) fn deactivate(self) -> Result<Self, &'static str> {
        match self {
            Self::Active => Ok(Self::Deactivated),
            Self::Deactivated => Err("the account is already deactivated"),
        }
    }

    /// # Errors
    /// When the account is active.
    pub(crate) fn reactivate(self) -> Result<Self, &'static str> {
        match self {
            Self::Deactivated => Ok(Self::Active),
            Self::Active => Err("the account is active"),
        }
    }
}

pub(crate) fn role_name(role: Role) -> &'static str {
    match role {
        Role::Customer => "customer",
        Role::Admin => "admin",
    }
}

pub(crate) fn parse_role(raw: &str) -> Option<Role> {
    match raw {
        "customer" => Some(Role::Customer),
        "admin" => Some(Role::Admin),
        _ => None,
    }
}

/// An account as stored.
#[derive(Debug, Clone)]
pub(crate) struct Account {
    pub(crate) id: UserId,
    pub(crate) email: String,
    pub(crate) display_name: String,
    pub(crate) password_hash: String,
    pub(crate) roles: Vec<Role>,
    pub(crate) status: Status,
    pub(crate) email_verified_at: Option<DateTime<Utc>>,
    pub(crate) preferences: Preferences,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

impl Account {
    pub(crate) fn is_admin(&self) -> bool {
        self.roles.contains(&Role::Admin)
    }

    pub(crate) fn is_active(&self) -> bool {
        self.status == Status::Active
    }
}

/// A display name: 1 to 100 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DisplayName(String);

impl DisplayName {
    /// # Errors
    /// Why the name is refused.
    pub(crate) fn parse(raw: &str) -> Result<Self, &'static str> {
        let trimmed = raw.trim();
        let length = trimmed.chars().count();
        if length == 0 {
            return Err("must not be empty");
        }
        if length > 100 {
            return Err("must be at most 100 characters long");
        }
        if trimmed.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub(crate) fn into_inner(self) -> String {
        self.0
    }
}

/// Changes to some switches of some channels; what is absent stays as it is.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PreferencesPatch {
    pub(crate) email: ChannelPatch,
    pub(crate) webhook: ChannelPatch,
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ChannelPatch {
    pub(crate) transactional: Option<bool>,
    pub(crate) marketing: Option<bool>,
}

impl ChannelPatch {
    fn apply(self, to: ChannelPreferences) -> ChannelPreferences {
        ChannelPreferences {
            transactional: self.transactional.unwrap_or(to.transactional),
            marketing: self.marketing.unwrap_or(to.marketing),
        }
    }
}

impl PreferencesPatch {
    /// The preferences after this patch.
    ///
    /// # Errors
    /// Turning transactional email off: receipts and account messages must reach the user.
    pub(crate) fn apply(self, to: Preferences) -> Result<Preferences, &'static str> {
        if self.email.transactional == Some(false) {
            return Err("transactional email cannot be turned off");
        }
        Ok(Preferences { email: self.email.apply(to.email), webhook: self.webhook.apply(to.webhook) })
    }
}

/// A role change an admin asks for, checked against the one rule that protects the system:
/// there is always at least one active admin.
#[derive(Debug, Clone)]
pub(crate) struct RolesChange {
    pub(crate) roles: Vec<Role>,
}

impl RolesChange {
    /// Normalises (sorted, no duplicates) and checks the requested set.
    ///
    /// # Errors
    /// An empty set.
    pub(crate) fn parse(mut roles: Vec<Role>) -> Result<Self, &'static str> {
        roles.sort_by_key(|role| role_name(*role));
        roles.dedup();
        if roles.is_empty() {
            return Err("must name at least one role");
        }
        Ok(Self { roles })
    }

    /// Whether applying it to `account` takes away the admin role.
    pub(crate) fn demotes(&self, account: &Account) -> bool {
        account.is_admin() && !self.roles.contains(&Role::Admin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactional_email_stays_on() {
        let patch = PreferencesPatch {
            email: ChannelPatch { transactional: Some(false), marketing: None },
            ..PreferencesPatch::default()
        };
        assert!(patch.apply(Preferences::default()).is_err());
        let patch = PreferencesPatch {
            email: ChannelPatch { transactional: Some(true), marketing: Some(true) },
            webhook: ChannelPatch { transactional: Some(false), marketing: None },
        };
        let applied = patch.apply(Preferences::default()).ok();
        assert_eq!(
            applied.map(|p| (p.email.marketing, p.webhook.transactional, p.webhook.marketing)),
            Some((true, false, false))
        );
    }

    #[test]
    fn status_transitions_are_checked() {
        assert_eq!(Status::Active.deactivate(), Ok(Status::Deactivated));
        assert!(Status::Deactivated.deactivate().is_err());
        assert_eq!(Status::Deactivated.reactivate(), Ok(Status::Active));
        assert!(Status::Active.reactivate().is_err());
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(DisplayName::parse("  Ada  ").map(DisplayName::into_inner), Ok("Ada".to_owned()));
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse(&"x".repeat(101)).is_err());
        assert!(DisplayName::parse("tab\there").is_err());
    }

    #[test]
    fn role_sets_are_normalised() {
        let change = RolesChange::parse(vec![Role::Admin, Role::Customer, Role::Admin]).ok().map(|c| c.roles);
        assert_eq!(change, Some(vec![Role::Admin, Role::Customer]));
        assert!(RolesChange::parse(Vec::new()).is_err());
    }
}
