//! Reservations for the order saga: all of an order's lines or none, never more than is
//! available. [`decide`] says whether a placed order's lines can be held; a reservation's
//! [`Status`] says what confirmation, cancellation and expiry do to it. Pure: the service
//! locks the levels, asks, and stores the answer.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use inventory_contract::events::{RejectedLine, RejectionCode};
use inventory_contract::{ProductId, Quantity};

use super::level::{StockLevel, units};

/// Where a reservation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub(crate) enum Status {
    Held,
    Committed,
    Released,
    Expired,
    Restocked,
    /// The order's stock could not be reserved; nothing was held.
    Rejected,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Committed => "committed",
            Self::Released => "released",
            Self::Expired => "expired",
            Self::Restocked => "restocked",
            Self::Rejected => "rejected",
        }
    }

    /// What confirming the order does: `Some(held)` — commit, from reserved when the units
    /// are still held, from on-hand alone after an expiry — or `None`, nothing to commit.
    pub(crate) fn commit(self) -> Option<bool> {
        match self {
            Self::Held => Some(true),
            Self::Expired => Some(false),
            Self::Committed | Self::Released | Self::Restocked | Self::Rejected => None,
        }
    }

    /// What cancelling the order does: held units are released, committed ones restocked;
    /// anything else has nothing to give back.
    pub(crate) fn cancel(self) -> Option<GiveBack> {
        match self {
            Self::Held => Some(GiveBack::Release),
            Self::Committed => Some(GiveBack::Restock),
            Self::Released | Self::Expired | Self::Restocked | Self::Rejected => None,
        }
    }

    /// What the expiry job finds at `now` for a reservation due at `expires_at`.
    pub(crate) fn expire(self, expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Expiry {
        match self {
            Self::Held if expires_at.is_some_and(|at| at > now) => Expiry::NotDue,
            Self::Held => Expiry::Expired,
            Self::Committed | Self::Released | Self::Expired | Self::Restocked | Self::Rejected => Expiry::Settled,
        }
    }
}

/// How units go back when an order is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GiveBack {
    /// Held units are free again; the reservation ends `released`.
    Release,
    /// Committed units come back on hand; the reservation ends `restocked`.
    Restock,
}

impl GiveBack {
    pub(crate) fn next(self) -> Status {
        match self {
            Self::Release => Status::Released,
            Self::Restock => Status::Restocked,
        }
    }
}

/// What an expiry job found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    Expired,
    /// Not due yet (the job ran early): try again later.
    NotDue,
    /// Committed, released or already expired: nothing to do.
    Settled,
}

/// The units an order wants per product, its lines added up (an order may name a product
/// twice). A sum beyond `i32::MAX` saturates: no product holds that many, so it is refused
/// as insufficient stock rather than wrapped.
pub(crate) fn wanted(lines: impl IntoIterator<Item = (ProductId, Quantity)>) -> BTreeMap<ProductId, Quantity> {
    let mut wanted: BTreeMap<ProductId, Quantity> = BTreeMap::new();
    for (product, quantity) in lines {
        wanted.entry(product).and_modify(|sum| *sum = sum.saturating_add(quantity)).or_insert(quantity);
    }
    wanted
}

/// The answer to a placed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Hold every line: (product, units), in product order.
    Reserve(Vec<(ProductId, Quantity)>),
    /// Hold nothing: why each refused line was refused.
    Reject(Vec<RejectedLine>),
}

/// Whether `wanted` can be held from `levels` (the products' locked levels; unknown products
/// are absent): every line or none.
pub(crate) fn decide(wanted: &BTreeMap<ProductId, Quantity>, levels: &[StockLevel]) -> Decision {
    let mut rejected = Vec::new();
    for (&product, &quantity) in wanted {
        let refusal = match levels.iter().find(|l| l.id == product) {
            None => Some((RejectionCode::UnknownProduct, 0)),
            Some(l) if !l.reservable() => Some((RejectionCode::InactiveProduct, l.available())),
            Some(l) if l.available() < quantity.as_i32() => Some((RejectionCode::InsufficientStock, l.available())),
            Some(_) => None,
        };
        if let Some((code, available)) = refusal {
            rejected.push(RejectedLine {
                product_id: product,
                code,
                requested: quantity.get(),
                available: units(available),
            });
        }
    }
    if rejected.is_empty() {
        Decision::Reserve(wanted.iter().map(|(&product, &quantity)| (product, quantity)).collect())
    } else {
        Decision::Reject(rejected)
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn level(id: u128, on_hand: i32, reserved: i32) -> StockLevel {
        StockLevel {
            id: product(id),
            sku: format!("SKU-{id}"),
            name: "Lamp".to_owned(),
            active: true,
            archived: false,
            on_hand,
            reserved,
            low_stock_threshold: 0,
            low_stock_alerted: false,
        }
    }

    fn product(id: u128) -> ProductId {
        ProductId::from(Uuid::from_u128(id))
    }

    /// An order's lines as (product, units).
    fn lines<const N: usize>(lines: [(ProductId, u32); N]) -> impl Iterator<Item = (ProductId, Quantity)> {
        lines.into_iter().map(|(product, units)| (product, Quantity::new(units).unwrap()))
    }

    /// What `wanted` holds, as (product, units).
    fn units_of(wanted: &BTreeMap<ProductId, Quantity>) -> Vec<(ProductId, u32)> {
        wanted.iter().map(|(&product, quantity)| (product, quantity.get())).collect()
    }

    #[test]
    fn lines_naming_a_product_twice_are_added_up_and_huge_sums_saturate() {
        let wanted = wanted(lines([(product(1), 2), (product(2), 1), (product(1), 3)]));
        assert_eq!(units_of(&wanted), [(product(1), 5), (product(2), 1)]);
        let huge = super::wanted(lines([(product(1), Quantity::MAX), (product(1), 1)]));
        assert_eq!(huge[&product(1)].as_i32(), i32::MAX);
    }

    #[test]
    fn an_order_whose_every_line_is_available_is_reserved_whole() {
        let wanted = wanted(lines([(product(1), 2), (product(2), 3)]));
        let decision = decide(&wanted, &[level(1, 2, 0), level(2, 5, 2)]);
        assert_eq!(decision, Decision::Reserve(lines([(product(1), 2), (product(2), 3)]).collect()));
    }

    #[test]
    fn one_line_short_rejects_the_whole_order_and_says_why_per_line() {
        let wanted = wanted(lines([(product(1), 2), (product(2), 4), (product(3), 1), (product(4), 1)]));
        let inactive = StockLevel { active: false, ..level(3, 9, 0) };
        let decision = decide(&wanted, &[level(1, 2, 0), level(2, 5, 2), inactive]);
        let Decision::Reject(lines) = decision else { panic!("expected a rejection, got {decision:?}") };
        let reasons: Vec<_> = lines.iter().map(|l| (l.product_id, l.code, l.requested, l.available)).collect();
        assert_eq!(
            reasons,
            [
                (product(2), RejectionCode::InsufficientStock, 4, 3),
                (product(3), RejectionCode::InactiveProduct, 1, 9),
                (product(4), RejectionCode::UnknownProduct, 1, 0),
            ]
        );
    }

    #[test]
    fn archived_products_are_not_reservable() {
        let archived = StockLevel { archived: true, ..level(1, 9, 0) };
        let decision = decide(&wanted(lines([(product(1), 1)])), &[archived]);
        assert!(matches!(decision, Decision::Reject(lines) if lines[0].code == RejectionCode::InactiveProduct));
    }

    #[test]
    fn confirmation_commits_held_units_from_reserved_and_expired_ones_from_on_hand() {
        assert_eq!(Status::Held.commit(), Some(true));
        assert_eq!(Status::Expired.commit(), Some(false));
        for settled in [Status::Committed, Status::Released, Status::Restocked, Status::Rejected] {
            assert_eq!(settled.commit(), None, "{settled:?}");
        }
    }

    #[test]
    fn cancellation_releases_held_units_and_restocks_committed_ones() {
        assert_eq!(Status::Held.cancel().map(GiveBack::next), Some(Status::Released));
        assert_eq!(Status::Committed.cancel().map(GiveBack::next), Some(Status::Restocked));
        for settled in [Status::Released, Status::Expired, Status::Restocked, Status::Rejected] {
            assert_eq!(settled.cancel(), None, "{settled:?}");
        }
    }

    #[test]
    fn only_a_held_reservation_past_its_time_expires() {
        let now = Utc::now();
        let later = now + chrono::TimeDelta::minutes(1);
        assert_eq!(Status::Held.expire(Some(later), now), Expiry::NotDue);
        assert_eq!(Status::Held.expire(Some(now), now), Expiry::Expired);
        assert_eq!(Status::Committed.expire(Some(now), later), Expiry::Settled);
        assert_eq!(Status::Expired.expire(Some(now), later), Expiry::Settled);
    }
}
