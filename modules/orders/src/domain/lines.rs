//! Rules over an order's lines that hold only once every line names its product by id.

use inventory_contract::ProductId;

/// The indexes of lines that name a product an earlier line already names. A client may
/// name a product by id on one line and by SKU on another; only the resolved ids tell, so
/// the rule "each product at most once" is checked on them, not on what the client wrote.
pub(crate) fn repeated_products(product_ids: impl IntoIterator<Item = ProductId>) -> Vec<usize> {
    let mut seen = std::collections::HashSet::new();
    product_ids.into_iter().enumerate().filter(|(_, id)| !seen.insert(*id)).map(|(index, _)| index).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_named_twice_is_reported_on_its_later_lines() {
        let (mug, cap) = (ProductId::from(uuid::Uuid::from_u128(1)), ProductId::from(uuid::Uuid::from_u128(2)));
        assert_eq!(repeated_products([mug, cap, mug, mug]), vec![2, 3]);
        assert!(repeated_products([mug, cap]).is_empty());
        assert!(repeated_products([]).is_empty());
    }
}
