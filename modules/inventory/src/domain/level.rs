//! A product's stock level and the one rule that guards it: on-hand and reserved never go
//! negative, and reserved never exceeds on-hand. Every change of stock — an adjustment, a
//! reservation, a commit, a release, a restock, a new threshold — is a [`LevelChange`]
//! applied here; the service stores what [`StockLevel::apply`] decided, records the movement
//! and appends `inventory.low_stock` when the outcome says the threshold was crossed.

use inventory_contract::ProductId;

/// Why on_hand changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub(crate) enum MovementKind {
    /// Goods arrived.
    Receive,
    /// A count found more or fewer units than recorded.
    Correct,
    /// Units were lost, damaged or expired.
    WriteOff,
    /// An order's reserved units left the warehouse.
    Commit,
    /// A cancelled order's committed units came back.
    Restock,
}

impl MovementKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Receive => "receive",
            Self::Correct => "correct",
            Self::WriteOff => "write_off",
            Self::Commit => "commit",
            Self::Restock => "restock",
        }
    }
}

/// A product's stock, as locked for a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StockLevel {
    pub(crate) id: ProductId,
    pub(crate) sku: String,
    pub(crate) name: String,
    pub(crate) active: bool,
    pub(crate) archived: bool,
    pub(crate) on_hand: i32,
    pub(crate) reserved: i32,
    pub(crate) low_stock_threshold: i32,
    /// `inventory.low_stock` was announced and availability has not risen above the
    /// threshold since: the alert fires once per crossing.
    pub(crate) low_stock_alerted: bool,
}

/// A change to apply to one product's levels. Signed arithmetic on the stock columns, so
/// `i32` (a level may be zero and a change negative); an order's units arrive as a
/// `Quantity` and become a change here (`Quantity::as_i32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LevelChange {
    /// Signed change of on-hand.
    pub(crate) on_hand: i32,
    /// Signed change of reserved.
    pub(crate) reserved: i32,
    /// Why on-hand moves; `None` only when `on_hand` is zero.
    pub(crate) kind: Option<MovementKind>,
}

impl LevelChange {
    /// Units taken off the shelf for an order (on-hand stays).
    pub(crate) fn reserve(units: i32) -> Self {
        Self { on_hand: 0, reserved: units, kind: None }
    }

    /// Held units handed back (on-hand stays).
    pub(crate) fn release(units: i32) -> Self {
        Self { on_hand: 0, reserved: -units, kind: None }
    }

    /// A paid order's units leave on-hand, and leave reserved too when they were still held.
    pub(crate) fn commit(units: i32, held: bool) -> Self {
        Self { on_hand: -units, reserved: if held { -units } else { 0 }, kind: Some(MovementKind::Commit) }
    }

    /// A cancelled order's committed units come back on hand.
    pub(crate) fn restock(units: i32) -> Self {
        Self { on_hand: units, reserved: 0, kind: Some(MovementKind::Restock) }
    }

    /// Units counted in by a person (`kind` says why); signed.
    pub(crate) fn count(kind: MovementKind, delta: i32) -> Self {
        Self { on_hand: delta, reserved: 0, kind: Some(kind) }
    }

    /// Nothing moves; the low-stock flag is re-evaluated (a new threshold).
    pub(crate) fn recheck() -> Self {
        Self { on_hand: 0, reserved: 0, kind: None }
    }
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Applied {
    /// The movement to record: on-hand moved by this much, for this reason.
    pub(crate) movement: Option<(MovementKind, i32)>,
    /// Availability fell to or below the threshold and had not been announced.
    pub(crate) low_stock: Option<LowStockCrossing>,
}

/// Availability crossed the low-stock threshold downwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LowStockCrossing {
    pub(crate) available: u32,
    pub(crate) threshold: u32,
}

/// Why a change was refused; the levels are untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LevelError {
    /// On-hand or reserved would go below zero, or reserved above on-hand.
    #[error("only {available} units are available")]
    Insufficient { available: i32 },
    /// On-hand would exceed what can be counted (`i32::MAX`).
    #[error("on-hand would exceed {} units", i32::MAX)]
    TooMany,
    /// On-hand moves without saying why: a programming error, not a business case.
    #[error("on-hand changed without a movement kind")]
    NoMovementKind,
}

impl StockLevel {
    /// Units that can still be reserved.
    pub(crate) fn available(&self) -> i32 {
        self.on_hand - self.reserved
    }

    /// Whether new reservations may take this product.
    pub(crate) fn reservable(&self) -> bool {
        self.active && !self.archived
    }

    /// Applies `change` if the levels stay whole, and says what to record.
    ///
    /// # Errors
    /// [`LevelError::Insufficient`] when on-hand or reserved would go negative or reserved
    /// would exceed on-hand; [`LevelError::TooMany`] when on-hand would overflow;
    /// [`LevelError::NoMovementKind`] when on-hand moves without a kind. On error nothing changes.
    pub(crate) fn apply(&mut self, change: LevelChange) -> Result<Applied, LevelError> {
        let insufficient = LevelError::Insufficient { available: self.available() };
        if change.on_hand != 0 && change.kind.is_none() {
            return Err(LevelError::NoMovementKind);
        }
        let on_hand = match self.on_hand.checked_add(change.on_hand) {
            Some(on_hand) => on_hand,
            None if change.on_hand > 0 => return Err(LevelError::TooMany),
            None => return Err(insufficient),
        };
        let reserved = self.reserved.checked_add(change.reserved).ok_or(insufficient)?;
        if on_hand < 0 || reserved < 0 || reserved > on_hand {
            return Err(insufficient);
        }
        self.on_hand = on_hand;
        self.reserved = reserved;
        let available = self.available();
        let threshold = self.low_stock_threshold;
        let crossed_down = threshold > 0 && available <= threshold && !self.low_stock_alerted;
        if crossed_down {
            self.low_stock_alerted = true;
        } else if available > threshold {
            self.low_stock_alerted = false;
        }
        let movement = change.kind.filter(|_| change.on_hand != 0).map(|kind| (kind, change.on_hand));
        let low_stock =
            crossed_down.then(|| LowStockCrossing { available: units(available), threshold: units(threshold) });
        Ok(Applied { movement, low_stock })
    }
}

/// A count of units as the contracts carry it (`u32`). Levels and thresholds are never
/// negative (the invariant above, and a `CHECK` on the column), so the clamp at zero is a
/// documented saturation that never bites.
pub(crate) fn units(count: i32) -> u32 {
    u32::try_from(count.max(0)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    fn level(on_hand: i32, reserved: i32, threshold: i32) -> StockLevel {
        StockLevel {
            id: ProductId::from(uuid::Uuid::nil()),
            sku: "SKU-1".to_owned(),
            name: "Lamp".to_owned(),
            active: true,
            archived: false,
            on_hand,
            reserved,
            low_stock_threshold: threshold,
            low_stock_alerted: false,
        }
    }

    #[test]
    fn reserving_what_is_available_holds_it_without_moving_on_hand() {
        let mut stock = level(5, 2, 0);
        let applied = stock.apply(LevelChange::reserve(3)).unwrap();
        assert_eq!((stock.on_hand, stock.reserved, stock.available()), (5, 5, 0));
        assert_eq!(applied, Applied { movement: None, low_stock: None });
    }

    #[test]
    fn reserving_more_than_is_available_is_refused_and_changes_nothing() {
        let mut stock = level(5, 2, 0);
        assert_eq!(stock.apply(LevelChange::reserve(4)), Err(LevelError::Insufficient { available: 3 }));
        assert_eq!(stock, level(5, 2, 0));
    }

    #[test]
    fn on_hand_never_drops_below_what_is_reserved() {
        let mut stock = level(5, 3, 0);
        assert_eq!(
            stock.apply(LevelChange::count(MovementKind::WriteOff, -3)),
            Err(LevelError::Insufficient { available: 2 })
        );
        assert_eq!(stock, level(5, 3, 0));
        let applied = stock.apply(LevelChange::count(MovementKind::WriteOff, -2)).unwrap();
        assert_eq!((stock.on_hand, stock.reserved), (3, 3));
        assert_eq!(applied.movement, Some((MovementKind::WriteOff, -2)));
    }

    #[test]
    fn neither_on_hand_nor_reserved_goes_below_zero() {
        assert_eq!(
            level(2, 0, 0).apply(LevelChange::count(MovementKind::Correct, -3)),
            Err(LevelError::Insufficient { available: 2 })
        );
        assert_eq!(level(2, 1, 0).apply(LevelChange::release(2)), Err(LevelError::Insufficient { available: 1 }));
    }

    #[test]
    fn on_hand_that_would_overflow_is_too_many_and_reserved_overflow_is_insufficient() {
        assert_eq!(level(i32::MAX, 0, 0).apply(LevelChange::count(MovementKind::Receive, 1)), Err(LevelError::TooMany));
        assert_eq!(
            level(10, 5, 0).apply(LevelChange::reserve(i32::MAX)),
            Err(LevelError::Insufficient { available: 5 })
        );
    }

    #[test]
    fn committing_held_units_takes_them_from_on_hand_and_reserved() {
        let mut stock = level(5, 3, 0);
        let applied = stock.apply(LevelChange::commit(3, true)).unwrap();
        assert_eq!((stock.on_hand, stock.reserved), (2, 0));
        assert_eq!(applied.movement, Some((MovementKind::Commit, -3)));
    }

    #[test]
    fn committing_after_an_expiry_takes_units_from_on_hand_only_as_far_as_they_are_free() {
        let mut stock = level(5, 3, 0);
        stock.apply(LevelChange::commit(2, false)).unwrap();
        assert_eq!((stock.on_hand, stock.reserved), (3, 3));
        assert_eq!(stock.apply(LevelChange::commit(1, false)), Err(LevelError::Insufficient { available: 0 }));
    }

    #[test]
    fn restocking_brings_units_back_on_hand() {
        let mut stock = level(2, 0, 0);
        let applied = stock.apply(LevelChange::restock(3)).unwrap();
        assert_eq!(stock.on_hand, 5);
        assert_eq!(applied.movement, Some((MovementKind::Restock, 3)));
    }

    #[test]
    fn moving_on_hand_without_a_reason_is_an_error() {
        let change = LevelChange { on_hand: 1, reserved: 0, kind: None };
        assert_eq!(level(0, 0, 0).apply(change), Err(LevelError::NoMovementKind));
    }

    #[test]
    fn low_stock_is_announced_once_per_crossing_and_rearms_above_the_threshold() {
        let mut stock = level(10, 0, 3);
        assert_eq!(stock.apply(LevelChange::reserve(6)).unwrap().low_stock, None);
        let crossing = stock.apply(LevelChange::reserve(1)).unwrap().low_stock;
        assert_eq!(crossing, Some(LowStockCrossing { available: 3, threshold: 3 }));
        assert_eq!(stock.apply(LevelChange::reserve(1)).unwrap().low_stock, None, "announced once");
        stock.apply(LevelChange::release(2)).unwrap();
        assert!(!stock.low_stock_alerted, "back above the threshold, the alert re-arms");
        let again = stock.apply(LevelChange::reserve(1)).unwrap().low_stock;
        assert_eq!(again, Some(LowStockCrossing { available: 3, threshold: 3 }));
    }

    #[test]
    fn a_zero_threshold_never_alerts_and_a_new_threshold_is_rechecked() {
        let mut stock = level(1, 0, 0);
        assert_eq!(stock.apply(LevelChange::reserve(1)).unwrap().low_stock, None);
        let mut stock = level(4, 0, 0);
        stock.low_stock_threshold = 5;
        let applied = stock.apply(LevelChange::recheck()).unwrap();
        assert_eq!(
            applied,
            Applied { movement: None, low_stock: Some(LowStockCrossing { available: 4, threshold: 5 }) }
        );
    }

    #[test]
    fn only_active_live_products_are_reservable() {
        assert!(level(1, 0, 0).reservable());
        assert!(!StockLevel { active: false, ..level(1, 0, 0) }.reservable());
        assert!(!StockLevel { archived: true, ..level(1, 0, 0) }.reservable());
    }
}
