//! The users module's public face: the [`UsersApi`] port other modules call, the data it
//! answers with, and the events the module publishes ([`events`]).
//!
//! What notifications needs to reach a person lives here: [`UsersApi::contact`] gives the
//! address, name, verified flag and preferences; [`UsersApi::action_link`] mints the one-time
//! link of an email-verification or password-reset request at the moment the message is sent,
//! so the secret never sits in an event, a log line or a stored row (ADR 0008).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared_kernel::port::CallContext;
use utoipa::ToSchema;
use uuid::Uuid;

#[cfg(feature = "client")]
pub mod client;
pub mod events;
pub mod internal_api;

/// The port's name, as manifests declare it (`ports_used`).
pub const PORT: &str = "UsersApi";

/// The modules that may call the port from another process: those whose manifest declares
/// it. The internal API refuses any other caller; the architecture test keeps this list and
/// the manifests in step.
pub const CALLERS: &[&str] = &["notifications"];

/// A user's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Uuid)]
pub struct UserId(pub Uuid);

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The id of one email-verification or password-reset request; it names the request, it is
/// not the secret of its link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Uuid)]
pub struct ActionRequestId(pub Uuid);

impl std::fmt::Display for ActionRequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Webhook,
}

/// What a message is about. Transactional messages concern something the user did (an
/// order, their account); marketing is everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Transactional,
    Marketing,
}

/// One channel's switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChannelPreferences {
    pub transactional: bool,
    pub marketing: bool,
}

/// A user's notification preferences per channel and category. Transactional email is always
/// on: receipts and account messages must reach the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"email": {"transactional": true, "marketing": false}, "webhook": {"transactional": true, "marketing": false}}))]
pub struct Preferences {
    pub email: ChannelPreferences,
    pub webhook: ChannelPreferences,
}

impl Default for Preferences {
    /// Transactional messages on, marketing opt-in.
    fn default() -> Self {
        let channel = ChannelPreferences { transactional: true, marketing: false };
        Self { email: channel, webhook: channel }
    }
}

impl Preferences {
    /// Whether a message of `category` may go out on `channel`.
    pub fn allows(&self, channel: Channel, category: Category) -> bool {
        let switches = match channel {
            Channel::Email => self.email,
            Channel::Webhook => self.webhook,
        };
        match (channel, category) {
            (Channel::Email, Category::Transactional) => true,
            (_, Category::Transactional) => switches.transactional,
            (_, Category::Marketing) => switches.marketing,
        }
    }
}

/// Whether an account can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    Deactivated,
}

/// How to reach a user: what the notifications module needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Contact {
    pub user_id: UserId,
    pub email: String,
    pub display_name: String,
    pub email_verified: bool,
    pub status: AccountStatus,
    pub preferences: Preferences,
}

/// What a one-time link lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionPurpose {
    VerifyEmail,
    ResetPassword,
}

/// A freshly minted one-time link. It carries a secret: put it in the message and nowhere
/// else — not in logs, not in stored rows. `Debug` leaves the secret out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ActionLink {
    pub request_id: ActionRequestId,
    pub user_id: UserId,
    pub purpose: ActionPurpose,
    /// The page a person opens, with the token as its `token` query parameter.
    pub url: String,
    /// The token alone, for clients that build their own URL.
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for ActionLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionLink")
            .field("request_id", &self.request_id)
            .field("user_id", &self.user_id)
            .field("purpose", &self.purpose)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Why a users port call failed. Transport failures are cases of their own, so callers handle
/// them the same way whether the module runs in their process or elsewhere.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("no user {0}")]
    UserNotFound(UserId),
    /// The request is unknown, already used, replaced by a newer one, or too old to mint.
    #[error("the link of request {0} can no longer be issued")]
    LinkUnavailable(ActionRequestId),
    #[error("the users module is unavailable: {0}")]
    Unavailable(String),
    #[error("the users module did not answer before the deadline")]
    Timeout,
    #[error("the users module failed: {0}")]
    Unexpected(String),
}

impl UsersError {
    /// Worth retrying later: the module may answer next time.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Timeout | Self::Unexpected(_))
    }
}

/// The users module's synchronous port.
#[async_trait::async_trait]
pub trait UsersApi: Send + Sync + std::fmt::Debug {
    /// How to reach `user`, including accounts that have been deactivated (callers decide).
    ///
    /// # Errors
    /// [`UsersError::UserNotFound`], or a transport failure.
    async fn contact(&self, ctx: &CallContext, user: UserId) -> Result<Contact, UsersError>;

    /// How to reach every active admin, oldest account first: the recipients of operational
    /// messages such as low stock.
    ///
    /// # Errors
    /// A transport failure.
    async fn admins(&self, ctx: &CallContext) -> Result<Vec<Contact>, UsersError>;

    /// Mints the one-time link of a verification or reset request announced by an event
    /// ([`events::UserRegistered`], [`events::EmailVerificationRequested`],
    /// [`events::PasswordResetRequested`]). Call it when the message is about to be sent:
    /// expiry counts from here, and minting again replaces the previous link of the request.
    ///
    /// # Errors
    /// [`UsersError::LinkUnavailable`] when the request is used, superseded or too old, or a
    /// transport failure.
    async fn action_link(&self, ctx: &CallContext, request: ActionRequestId) -> Result<ActionLink, UsersError>;
}
