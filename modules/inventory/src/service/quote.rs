//! The inventory port for callers in this process: prices at this moment, availability
//! (advisory) and what stands in the way per line.

use inventory_contract::{
    InventoryApi, InventoryError, LineProblem, LineProblemKind, ProductRef, Quote, QuoteLine, QuotedLine,
};
use platform::money::{Currency, Money};
use platform::port::CallContext;

use super::InventoryService;
use crate::store::products;

#[async_trait::async_trait]
impl InventoryApi for InventoryService {
    #[tracing::instrument(skip_all, fields(lines = lines.len(), correlation_id = %ctx.correlation_id), err(level = "info"))]
    async fn quote(&self, ctx: &CallContext, lines: &[QuoteLine]) -> Result<Quote, InventoryError> {
        let unexpected = |e: anyhow::Error| InventoryError::Unexpected(format!("{e:#}"));
        // A SKU arrives parsed (the contract's `Sku`), so no text that would fail a query (a
        // NUL character) reaches one, and the caller never takes our failure for an outage.
        let (mut ids, mut skus) = (Vec::new(), Vec::new());
        for line in lines {
            match &line.product {
                ProductRef::Id(id) => ids.push(*id),
                ProductRef::Sku(sku) => skus.push(sku.as_str().to_owned()),
            }
        }
        let mut db = self.pool.acquire().await.map_err(|e| InventoryError::Unavailable(e.to_string()))?;
        let found = products::by_ids_or_skus(&mut db, &ids, &skus).await.map_err(unexpected)?;
        let mut quote = Quote { currency: None, lines: Vec::new(), problems: Vec::new() };
        for (index, line) in lines.iter().enumerate() {
            let product = found.iter().find(|p| match &line.product {
                ProductRef::Id(id) => p.id == *id,
                ProductRef::Sku(sku) => p.sku == sku.as_str(),
            });
            let Some(product) = product else {
                quote.problems.push(LineProblem { line: index, kind: LineProblemKind::UnknownProduct });
                continue;
            };
            if !product.sellable() {
                quote.problems.push(LineProblem { line: index, kind: LineProblemKind::InactiveProduct });
                continue;
            }
            let currency = Currency::parse(&product.currency).map_err(|e| unexpected(e.into()))?;
            if quote.currency.is_some_and(|c| c != currency) {
                quote.problems.push(LineProblem { line: index, kind: LineProblemKind::CurrencyMismatch });
                continue;
            }
            quote.currency.get_or_insert(currency);
            quote.lines.push(QuotedLine {
                product_id: product.id,
                sku: product.sku.clone(),
                name: product.name.clone(),
                quantity: line.quantity,
                unit_price: Money::new(product.price, currency),
                available: u32::try_from(product.available()).unwrap_or_default(),
            });
        }
        Ok(quote)
    }
}
