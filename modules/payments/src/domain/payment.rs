//! A payment's status and the transitions between them (docs/payments.md, "States"):
//!
//! ```text
//! pending ──▶ authorized ──▶ captured ──▶ partially_refunded ──▶ refunded
//!    │  ╲          │  ╲            ╲________________________________▲
//!    ▼   ▼         ▼   ▼
//! failed voided  failed voided
//! ```

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub(crate) enum PaymentStatus {
    /// Created from the order's payment request; the gateway has not authorized it yet.
    Pending,
    /// The amount is held on the customer's payment method.
    Authorized,
    /// The money was taken.
    Captured,
    /// Some of it went back.
    PartiallyRefunded,
    /// All of it went back (final).
    Refunded,
    /// Declined, or the gateway failed for good; nothing was taken (final).
    Failed,
    /// The order was cancelled before the capture; the hold was released (final).
    Voided,
}

/// A transition the status does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {from} payment cannot be {to}", from = from.as_str())]
pub(crate) struct Illegal {
    pub(crate) from: PaymentStatus,
    pub(crate) to: &'static str,
}

impl PaymentStatus {
    #[cfg(test)]
    const ALL: [Self; 7] = [
        Self::Pending,
        Self::Authorized,
        Self::Captured,
        Self::PartiallyRefunded,
        Self::Refunded,
        Self::Failed,
        Self::Voided,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Authorized => "authorized",
            Self::Captured => "captured",
            Self::PartiallyRefunded => "partially_refunded",
            Self::Refunded => "refunded",
            Self::Failed => "failed",
            Self::Voided => "voided",
        }
    }

    fn to(self, to: &'static str, allowed: bool, next: Self) -> Result<Self, Illegal> {
        if allowed { Ok(next) } else { Err(Illegal { from: self, to }) }
    }

    /// The gateway holds the amount.
    pub(crate) fn authorize(self) -> Result<Self, Illegal> {
        self.to("authorized", self == Self::Pending, Self::Authorized)
    }

    /// The gateway took the money.
    pub(crate) fn capture(self) -> Result<Self, Illegal> {
        self.to("captured", self == Self::Authorized, Self::Captured)
    }

    /// Declined or failed for good, before any money was taken.
    pub(crate) fn fail(self) -> Result<Self, Illegal> {
        self.to("failed", matches!(self, Self::Pending | Self::Authorized), Self::Failed)
    }

    /// Released before the capture.
    pub(crate) fn void(self) -> Result<Self, Illegal> {
        self.to("voided", matches!(self, Self::Pending | Self::Authorized), Self::Voided)
    }

    /// A refund went through; `refunded` of `captured` is back with the customer.
    pub(crate) fn refund(self, refunded: i64, captured: i64) -> Result<Self, Illegal> {
        let next = if refunded >= captured { Self::Refunded } else { Self::PartiallyRefunded };
        self.to("refunded", self.has_captured() && refunded > 0 && refunded <= captured, next)
    }

    /// Money was taken (and maybe partly given back): refunds are possible.
    pub(crate) fn has_captured(self) -> bool {
        matches!(self, Self::Captured | Self::PartiallyRefunded)
    }

    /// Not settled with the gateway yet: what reconciliation looks at.
    pub(crate) fn is_unsettled(self) -> bool {
        matches!(self, Self::Pending | Self::Authorized)
    }
}

impl std::fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::PaymentStatus::{self, *};

    #[test]
    fn the_happy_path_is_authorize_then_capture_then_refund() {
        let captured = Pending.authorize().and_then(PaymentStatus::capture).unwrap();
        assert_eq!(captured, Captured);
        assert_eq!(captured.refund(1000, 2999).unwrap(), PartiallyRefunded);
        assert_eq!(PartiallyRefunded.refund(2999, 2999).unwrap(), Refunded);
    }

    #[test]
    fn money_never_goes_back_twice_or_before_it_was_taken() {
        assert!(Refunded.refund(2999, 2999).is_err());
        assert!(Authorized.refund(1, 2999).is_err());
        assert!(Captured.refund(3000, 2999).is_err());
        assert!(Captured.refund(0, 2999).is_err());
    }

    #[test]
    fn only_unsettled_payments_fail_or_void() {
        for status in [Pending, Authorized] {
            assert_eq!(status.fail().unwrap(), Failed);
            assert_eq!(status.void().unwrap(), Voided);
        }
        for status in [Captured, PartiallyRefunded, Refunded, Failed, Voided] {
            assert!(status.fail().is_err(), "{status}");
            assert!(status.void().is_err(), "{status}");
        }
    }

    #[test]
    fn a_capture_needs_an_authorization() {
        assert!(Pending.capture().is_err());
        assert!(Captured.capture().is_err());
        assert!(Authorized.authorize().is_err());
    }

    #[test]
    fn the_stored_and_serialized_names_are_the_documented_ones() {
        // The column is decoded by sqlx's `rename_all = "snake_case"`, the API by serde's: both
        // must give what `as_str` documents.
        for status in PaymentStatus::ALL {
            assert_eq!(serde_json::to_value(status).ok(), Some(serde_json::Value::from(status.as_str())));
        }
    }
}
