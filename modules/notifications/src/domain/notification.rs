//! A notification's channel and status, and the moves between statuses.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a notification goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Channel {
    Email,
    Webhook,
}

impl Channel {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Webhook => "webhook",
        }
    }

    pub(crate) fn parse(raw: &str) -> Option<Self> {
        match raw {
            "email" => Some(Self::Email),
            "webhook" => Some(Self::Webhook),
            _ => None,
        }
    }
}

/// Where a notification is in its life: `pending` until its delivery job sends it (`sent`)
/// or gives up (`failed`, with the cause); `skipped` when it was decided not to send it at
/// all (no such user, a deactivated account, the user's preferences). An admin may send a
/// `failed` one again, which makes it `pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    Pending,
    Sent,
    Failed,
    Skipped,
}

/// A move the status does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from} notification cannot be {action}")]
pub(crate) struct TransitionError {
    pub(crate) from: &'static str,
    pub(crate) action: &'static str,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    pub(crate) fn parse(raw: &str) -> Option<Self> {
        match raw {
            "pending" => Some(Self::Pending),
            "sent" => Some(Self::Sent),
            "failed" => Some(Self::Failed),
            "skipped" => Some(Self::Skipped),
            _ => None,
        }
    }

    /// A delivery attempt may only work on a pending notification: anything else was
    /// settled by an earlier run of the job.
    pub(crate) fn deliverable(self) -> bool {
        self == Self::Pending
    }

    /// An admin's retry of a notification that failed for good.
    ///
    /// # Errors
    /// Anything but `failed`.
    pub(crate) fn retry(self) -> Result<Self, TransitionError> {
        match self {
            Self::Failed => Ok(Self::Pending),
            other => Err(TransitionError { from: other.as_str(), action: "retried" }),
        }
    }

    /// A manual redelivery of a webhook: a failed one, or one delivered that the receiver
    /// wants again (it lost it). A pending one is still on its way.
    ///
    /// # Errors
    /// `pending` and `skipped`.
    pub(crate) fn redeliver(self) -> Result<Self, TransitionError> {
        match self {
            Self::Failed | Self::Sent => Ok(Self::Pending),
            other => Err(TransitionError { from: other.as_str(), action: "redelivered" }),
        }
    }
}

/// A stored value the code does not know (the columns' CHECKs should make it impossible).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub(crate) struct UnknownValue {
    kind: &'static str,
    value: String,
}

impl TryFrom<String> for Channel {
    type Error = UnknownValue;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value).ok_or(UnknownValue { kind: "channel", value })
    }
}

impl TryFrom<String> for Status {
    type Error = UnknownValue;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value).ok_or(UnknownValue { kind: "status", value })
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failed_notifications_can_be_retried() {
        assert_eq!(Status::Failed.retry(), Ok(Status::Pending));
        for status in [Status::Pending, Status::Sent, Status::Skipped] {
            assert!(status.retry().is_err(), "{status}");
        }
    }

    #[test]
    fn delivered_and_failed_webhooks_can_be_redelivered() {
        assert_eq!(Status::Sent.redeliver(), Ok(Status::Pending));
        assert_eq!(Status::Failed.redeliver(), Ok(Status::Pending));
        assert!(Status::Pending.redeliver().is_err());
        assert!(Status::Skipped.redeliver().is_err());
    }

    #[test]
    fn statuses_and_channels_read_back_what_they_write() {
        for status in [Status::Pending, Status::Sent, Status::Failed, Status::Skipped] {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        for channel in [Channel::Email, Channel::Webhook] {
            assert_eq!(Channel::parse(channel.as_str()), Some(channel));
        }
    }

    #[test]
    fn an_unknown_stored_channel_or_status_is_an_error_not_a_guess() {
        assert!(Channel::try_from("sms".to_owned()).is_err());
        assert!(Status::try_from("lost".to_owned()).is_err());
        assert_eq!(Channel::try_from("webhook".to_owned()), Ok(Channel::Webhook));
    }
}
