//! Totals of an order: subtotal from the quoted lines, shipping by the documented rule (a flat
//! 4.99 in the order's currency, free from a 50.00 subtotal), all in minor units.

use orders_contract::OrderLine;
use platform::money::{Currency, Money};

/// Shipping cost below the free-shipping threshold, in minor units.
pub(crate) const FLAT_SHIPPING: i64 = 499;
/// Subtotal from which shipping is free, in minor units.
pub(crate) const FREE_SHIPPING_FROM: i64 = 5000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) subtotal: Money,
    pub(crate) shipping: Money,
    pub(crate) total: Money,
}

/// Sums the lines (all in `currency`) and adds shipping. `None` on overflow or a line in
/// another currency, which a quote never gives.
pub(crate) fn price(lines: &[OrderLine], currency: Currency) -> Option<Totals> {
    let subtotal = lines.iter().try_fold(Money::zero(currency), |sum, line| sum.checked_add(line.line_total))?;
    let shipping = Money::new(if subtotal.amount >= FREE_SHIPPING_FROM { 0 } else { FLAT_SHIPPING }, currency);
    let total = subtotal.checked_add(shipping)?;
    Some(Totals { subtotal, shipping, total })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    use inventory_contract::{ProductId, Quantity};
    use uuid::Uuid;

    use super::*;

    fn line(unit: i64, quantity: u32, currency: Currency) -> OrderLine {
        OrderLine {
            product_id: ProductId::from(Uuid::nil()),
            sku: "SKU".to_owned(),
            name: "Thing".to_owned(),
            quantity: Quantity::new(quantity).unwrap(),
            unit_price: Money::new(unit, currency),
            line_total: Money::new(unit * i64::from(quantity), currency),
        }
    }

    #[test]
    fn shipping_is_flat_below_fifty_and_free_from_fifty() {
        let eur = Currency::parse("EUR").unwrap();
        let small = price(&[line(1250, 2, eur)], eur).unwrap();
        assert_eq!((small.subtotal.amount, small.shipping.amount, small.total.amount), (2500, 499, 2999));
        let exactly = price(&[line(2500, 2, eur)], eur).unwrap();
        assert_eq!((exactly.shipping.amount, exactly.total.amount), (0, 5000));
    }

    #[test]
    fn mixed_currencies_and_overflow_are_refused() {
        let (eur, usd) = (Currency::parse("EUR").unwrap(), Currency::parse("USD").unwrap());
        assert!(price(&[line(100, 1, eur), line(100, 1, usd)], eur).is_none());
        assert!(price(&[line(i64::MAX / 2, 2, eur), line(i64::MAX / 2, 2, eur)], eur).is_none());
    }
}
