//! How many units of a product: what an order line asks for, a quote prices and a
//! reservation holds.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A positive count of units, 1 to [`Quantity::MAX`]. Made once, where a count enters (a
/// request body, a stored row); inside, the type is the proof that it is neither zero nor
/// more than a store's `int` column holds. On the wire it is the plain number, and a number
/// out of range is refused when it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "u32", into = "u32")]
#[schema(value_type = u32, example = 2)]
pub struct Quantity(u32);

impl Quantity {
    /// The most units one line may carry: what the stores' `int` columns hold.
    pub const MAX: u32 = i32::MAX.unsigned_abs();

    /// # Errors
    /// A sentence saying why `units` is not a quantity: zero, or more than [`Quantity::MAX`].
    pub fn new(units: u32) -> Result<Self, &'static str> {
        if units == 0 || units > Self::MAX {
            return Err("must be a whole number from 1 to 2147483647");
        }
        Ok(Self(units))
    }

    #[must_use]
    pub fn get(self) -> u32 {
        self.0
    }

    /// The two counts added up, at most [`Quantity::MAX`]: what an order's lines naming one
    /// product add up to. No product holds that many, so a sum at the ceiling is refused as
    /// insufficient stock rather than wrapped.
    #[must_use]
    pub fn saturating_add(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0).min(Self::MAX))
    }

    /// The count as a store's `int` column holds it; always fits, by construction.
    #[must_use]
    pub fn as_i32(self) -> i32 {
        i32::try_from(self.0).unwrap_or(i32::MAX)
    }
}

impl TryFrom<u32> for Quantity {
    type Error = &'static str;

    fn try_from(units: u32) -> Result<Self, Self::Error> {
        Self::new(units)
    }
}

impl TryFrom<i32> for Quantity {
    type Error = &'static str;

    fn try_from(units: i32) -> Result<Self, Self::Error> {
        u32::try_from(units).map_err(|_| "must be a whole number from 1 to 2147483647").and_then(Self::new)
    }
}

impl TryFrom<i64> for Quantity {
    type Error = &'static str;

    fn try_from(units: i64) -> Result<Self, Self::Error> {
        u32::try_from(units).map_err(|_| "must be a whole number from 1 to 2147483647").and_then(Self::new)
    }
}

impl From<Quantity> for u32 {
    fn from(quantity: Quantity) -> Self {
        quantity.0
    }
}

impl From<Quantity> for i64 {
    fn from(quantity: Quantity) -> Self {
        i64::from(quantity.0)
    }
}

impl std::fmt::Display for Quantity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    #[test]
    fn a_quantity_is_one_to_the_most_an_int_column_holds() {
        assert_eq!(Quantity::new(1).map(Quantity::get), Ok(1));
        assert_eq!(Quantity::new(Quantity::MAX).map(Quantity::as_i32), Ok(i32::MAX));
        assert!(Quantity::new(0).is_err());
        assert!(Quantity::new(Quantity::MAX + 1).is_err());
        assert!(Quantity::try_from(-1_i32).is_err());
        assert!(Quantity::try_from(i64::from(u32::MAX) + 1).is_err());
    }

    #[test]
    fn adding_quantities_stops_at_the_most_an_int_column_holds() {
        let two = Quantity::new(2).unwrap();
        assert_eq!(two.saturating_add(Quantity::new(3).unwrap()).get(), 5);
        let most = Quantity::new(Quantity::MAX).unwrap();
        assert_eq!(most.saturating_add(two).get(), Quantity::MAX);
        assert_eq!(most.saturating_add(most).get(), Quantity::MAX);
    }

    #[test]
    fn a_quantity_on_the_wire_is_its_number_and_a_bad_one_is_refused_when_read() {
        let two = Quantity::new(2).unwrap();
        assert_eq!(serde_json::to_value(two).unwrap(), serde_json::json!(2));
        assert_eq!(serde_json::from_value::<Quantity>(serde_json::json!(2)).unwrap(), two);
        assert!(serde_json::from_value::<Quantity>(serde_json::json!(0)).is_err());
        assert!(serde_json::from_value::<Quantity>(serde_json::json!(-1)).is_err());
        assert_eq!(two.to_string(), "2");
    }
}
