//! The ledger's arithmetic: a payment's balances are sums over its immutable entries.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One kind of money movement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EntryKind {
    /// The amount was put on hold.
    Authorization,
    /// Held money was taken.
    Capture,
    /// A hold was released without being taken.
    Void,
    /// Taken money went back.
    Refund,
}

impl EntryKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Authorization => "authorization",
            Self::Capture => "capture",
            Self::Void => "void",
            Self::Refund => "refund",
        }
    }

    pub(crate) fn parse(raw: &str) -> Option<Self> {
        [Self::Authorization, Self::Capture, Self::Void, Self::Refund].into_iter().find(|kind| kind.as_str() == raw)
    }
}

/// A payment's balances, in minor units of its currency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub(crate) struct Balances {
    /// Held and not yet taken or released.
    pub(crate) held: i64,
    /// Taken, in all.
    pub(crate) captured: i64,
    /// Given back, in all.
    pub(crate) refunded: i64,
    /// What the merchant keeps: captured − refunded.
    pub(crate) net: i64,
}

impl Balances {
    pub(crate) fn from_entries(entries: impl IntoIterator<Item = (EntryKind, i64)>) -> Self {
        let (mut authorized, mut captured, mut voided, mut refunded) = (0i64, 0i64, 0i64, 0i64);
        for (kind, amount) in entries {
            let sum = match kind {
                EntryKind::Authorization => &mut authorized,
                EntryKind::Capture => &mut captured,
                EntryKind::Void => &mut voided,
                EntryKind::Refund => &mut refunded,
            };
            *sum = sum.saturating_add(amount);
        }
        Self { held: (authorized - captured - voided).max(0), captured, refunded, net: captured - refunded }
    }
}

#[cfg(test)]
mod tests {
    use super::EntryKind::*;
    use super::*;

    #[test]
    fn a_capture_turns_the_hold_into_money_taken() {
        let balances = Balances::from_entries([(Authorization, 2999), (Capture, 2999)]);
        assert_eq!(balances, Balances { held: 0, captured: 2999, refunded: 0, net: 2999 });
    }

    #[test]
    fn refunds_lower_what_the_merchant_keeps() {
        let balances = Balances::from_entries([(Authorization, 2999), (Capture, 2999), (Refund, 1000), (Refund, 999)]);
        assert_eq!(balances, Balances { held: 0, captured: 2999, refunded: 1999, net: 1000 });
    }

    #[test]
    fn a_void_releases_the_hold() {
        assert_eq!(Balances::from_entries([(Authorization, 500)]).held, 500);
        assert_eq!(Balances::from_entries([(Authorization, 500), (Void, 500)]), Balances::default());
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in [Authorization, Capture, Void, Refund] {
            assert_eq!(EntryKind::parse(kind.as_str()), Some(kind));
        }
    }
}
