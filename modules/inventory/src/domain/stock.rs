//! Stock adjustments by people: goods received, a count corrected, units written off. Each
//! becomes one immutable movement; the levels themselves are guarded by [`super::StockLevel`].

use platform::http::FieldError;
use serde::Deserialize;
use utoipa::ToSchema;

/// What an admin records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AdjustmentKind {
    /// Goods arrived: `quantity` (> 0) units are added.
    Receive,
    /// A count differs from the records: `quantity` is the signed, non-zero difference.
    Correct,
    /// Units were lost, damaged or expired: `quantity` (> 0) units are removed.
    WriteOff,
}

/// A checked adjustment: the signed change of on-hand and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Adjustment {
    pub(crate) kind: AdjustmentKind,
    /// Signed change of on-hand: negative for write-offs and downward corrections.
    pub(crate) delta: i32,
    pub(crate) reason: String,
}

pub(crate) const MAX_REASON_CHARS: usize = 500;

impl Adjustment {
    /// # Errors
    /// One [`FieldError`] per wrong field (`quantity`, `reason`).
    pub(crate) fn parse(kind: AdjustmentKind, quantity: i64, reason: &str) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let max = i64::from(i32::MAX);
        let delta = match kind {
            AdjustmentKind::Receive | AdjustmentKind::WriteOff if !(1..=max).contains(&quantity) => {
                errors.push(field("quantity", "range", format!("must be between 1 and {max}")));
                None
            }
            AdjustmentKind::Correct if quantity == 0 || quantity.unsigned_abs() > max.unsigned_abs() => {
                errors.push(field(
                    "quantity",
                    "range",
                    format!("must be a non-zero difference between -{max} and {max}"),
                ));
                None
            }
            AdjustmentKind::WriteOff => i32::try_from(-quantity).ok(),
            AdjustmentKind::Receive | AdjustmentKind::Correct => i32::try_from(quantity).ok(),
        };
        let reason = reason.trim();
        if !(1..=MAX_REASON_CHARS).contains(&reason.chars().count()) {
            errors.push(field("reason", "length", format!("must be 1 to {MAX_REASON_CHARS} characters")));
        }
        match delta {
            Some(delta) if errors.is_empty() => Ok(Self { kind, delta, reason: reason.to_owned() }),
            _ => Err(errors),
        }
    }
}

fn field(field: &str, code: &str, message: String) -> FieldError {
    FieldError { field: field.to_owned(), code: code.to_owned(), message }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    fn fields(result: Result<Adjustment, Vec<FieldError>>) -> Vec<String> {
        result.unwrap_err().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn write_offs_subtract_and_corrections_keep_their_sign() {
        assert_eq!(Adjustment::parse(AdjustmentKind::Receive, 5, " delivery ").unwrap().delta, 5);
        assert_eq!(Adjustment::parse(AdjustmentKind::WriteOff, 5, "broken").unwrap().delta, -5);
        assert_eq!(Adjustment::parse(AdjustmentKind::Correct, -3, "count").unwrap().delta, -3);
        assert_eq!(Adjustment::parse(AdjustmentKind::Receive, 5, " delivery ").unwrap().reason, "delivery");
    }

    #[test]
    fn quantities_and_reasons_out_of_range_are_refused_per_field() {
        for kind in [AdjustmentKind::Receive, AdjustmentKind::WriteOff] {
            for quantity in [0, -1, i64::from(i32::MAX) + 1] {
                assert_eq!(fields(Adjustment::parse(kind, quantity, "ok")), ["quantity"], "{kind:?} {quantity}");
            }
        }
        for quantity in [0, i64::from(i32::MIN), i64::from(i32::MAX) + 1] {
            assert_eq!(fields(Adjustment::parse(AdjustmentKind::Correct, quantity, "ok")), ["quantity"], "{quantity}");
        }
        assert_eq!(fields(Adjustment::parse(AdjustmentKind::Receive, 0, "  ")), ["quantity", "reason"]);
        assert_eq!(fields(Adjustment::parse(AdjustmentKind::Receive, 1, &"x".repeat(501))), ["reason"]);
        assert!(Adjustment::parse(AdjustmentKind::Receive, 1, &"é".repeat(500)).is_ok());
    }
}
