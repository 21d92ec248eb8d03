//! Placing an order: prices from inventory's quote (never from the client), totals by the
//! shipping rule, the order stored `pending` and `orders.order_placed` appended in one
//! transaction.

use std::time::Duration;

use inventory_contract::{InventoryError, LineProblem, ProductRef, Quantity, QuoteLine};
use orders_contract::events::OrderPlaced;
use orders_contract::{OrderId, OrderLine, ShippingAddress};
use platform::bus;
use platform::http::RequestContext;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::OrdersService;
use crate::domain::{price, repeated_products};
use crate::store::orders::{self, Cause, NewOrder};

/// One requested line.
#[derive(Debug, Clone)]
pub(crate) struct LineRequest {
    pub(crate) product: ProductRef,
    pub(crate) quantity: Quantity,
}

/// A validated order request.
#[derive(Debug, Clone)]
pub(crate) struct PlaceOrder {
    pub(crate) user_id: Uuid,
    pub(crate) lines: Vec<LineRequest>,
    pub(crate) shipping_address: ShippingAddress,
    pub(crate) payment_method: String,
    /// The client's Idempotency-Key: the same key places one order, whatever happens to the
    /// answer on its way back.
    pub(crate) idempotency_key: String,
}

impl PlaceOrder {
    /// A digest of what was asked, to tell a retry from another order under the same key.
    fn digest(&self) -> Vec<u8> {
        let lines: Vec<(&ProductRef, Quantity)> = self.lines.iter().map(|l| (&l.product, l.quantity)).collect();
        let canonical = serde_json::json!([lines, self.shipping_address, self.payment_method]);
        Sha256::digest(canonical.to_string().as_bytes()).to_vec()
    }
}

/// What placing came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placed {
    New(OrderId),
    /// The key was used before for this same request: that order.
    Again(OrderId),
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PlaceOrderError {
    /// Lines inventory cannot sell as asked (unknown, inactive, short, other currency).
    #[error("some lines cannot be ordered")]
    Lines(Vec<LineProblem>),
    /// Lines (by index) that name a product an earlier line names too, once resolved (by id
    /// on one line and by SKU on another, say).
    #[error("a product is on more than one line")]
    RepeatedProducts(Vec<usize>),
    /// Inventory could not be asked; nothing was written.
    #[error("the inventory module is unavailable")]
    InventoryUnavailable { retry_after: Duration },
    #[error("the order's amounts overflow")]
    TooLarge,
    /// The key was used before for a different request.
    #[error("the Idempotency-Key was used for another order")]
    KeyReused,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl OrdersService {
    /// # Errors
    /// [`PlaceOrderError`]: per-line problems, inventory unavailable (nothing written).
    #[tracing::instrument(skip_all, fields(user_id = %request.user_id, lines = request.lines.len()), err(level = "info"))]
    pub(crate) async fn place_order(
        &self,
        request: PlaceOrder,
        ctx: &RequestContext,
    ) -> Result<Placed, PlaceOrderError> {
        let digest = request.digest();
        // A retry of a placement that went through is told apart only where it matters, so a
        // first placement does not pay for a lookup: the insert meets the key's unique index,
        // and a placement that fails before its insert (the catalogue changed since, or cannot
        // be reached) looks for the order its key placed before answering with the failure.
        match self.place_new(&request, &digest, ctx).await {
            // A reused key was found by its lookup already.
            Err(error) if !matches!(error, PlaceOrderError::Unexpected(_) | PlaceOrderError::KeyReused) => {
                Ok(self.placed_before(&request, &digest).await?.ok_or(error)?)
            }
            placed => placed,
        }
    }

    async fn place_new(
        &self,
        request: &PlaceOrder,
        digest: &[u8],
        ctx: &RequestContext,
    ) -> Result<Placed, PlaceOrderError> {
        let quote_lines: Vec<QuoteLine> =
            request.lines.iter().map(|l| QuoteLine { product: l.product.clone(), quantity: l.quantity }).collect();
        let call = ctx.call(Some(request.user_id.to_string())).with_timeout(self.config.quote_timeout);
        let quote =
            match tokio::time::timeout(self.config.quote_timeout, self.inventory.quote(&call, &quote_lines)).await {
                Ok(Ok(quote)) => quote,
                Ok(Err(InventoryError::Unavailable(reason) | InventoryError::Unexpected(reason))) => {
                    tracing::warn!(%reason, "inventory could not quote");
                    return Err(PlaceOrderError::InventoryUnavailable { retry_after: Duration::from_secs(5) });
                }
                Ok(Err(InventoryError::Timeout)) | Err(_) => {
                    tracing::warn!("inventory did not quote in time");
                    return Err(PlaceOrderError::InventoryUnavailable { retry_after: Duration::from_secs(5) });
                }
            };
        if !quote.problems.is_empty() {
            return Err(PlaceOrderError::Lines(quote.problems));
        }
        let currency = quote.currency.ok_or_else(|| anyhow::anyhow!("a quote without problems has no currency"))?;
        if quote.lines.len() != request.lines.len() {
            return Err(
                anyhow::anyhow!("the quote has {} lines for {} asked", quote.lines.len(), request.lines.len()).into()
            );
        }
        let repeated = repeated_products(quote.lines.iter().map(|line| line.product_id));
        if !repeated.is_empty() {
            return Err(PlaceOrderError::RepeatedProducts(repeated));
        }
        let lines = quote
            .lines
            .into_iter()
            .map(|q| {
                let line_total = q.unit_price.checked_mul(i64::from(q.quantity)).ok_or(PlaceOrderError::TooLarge)?;
                Ok(OrderLine {
                    product_id: q.product_id,
                    sku: q.sku,
                    name: q.name,
                    quantity: q.quantity,
                    unit_price: q.unit_price,
                    line_total,
                })
            })
            .collect::<Result<Vec<_>, PlaceOrderError>>()?;
        let totals = price(&lines, currency).ok_or(PlaceOrderError::TooLarge)?;
        let now = self.now();
        let order = NewOrder {
            id: OrderId(Uuid::now_v7()),
            user_id: request.user_id,
            lines,
            totals,
            shipping_address: request.shipping_address.clone(),
            payment_method: request.payment_method.clone(),
            idempotency_key: request.idempotency_key.clone(),
            request_digest: digest.to_vec(),
            placed_at: now,
        };
        let placed = OrderPlaced {
            order_id: order.id,
            user_id: order.user_id,
            lines: order.lines.clone(),
            subtotal: totals.subtotal,
            shipping: totals.shipping,
            total: totals.total,
            shipping_address: order.shipping_address.clone(),
            placed_at: now,
        };
        let mut tx = self.pool.begin().await.map_err(anyhow::Error::from)?;
        match orders::insert(&mut tx, &order, &Cause::Request(ctx.request_id.clone())).await {
            // A concurrent request with the same key won: answer as it did.
            Err(error) if orders::is_duplicate_key(&error) => {
                drop(tx);
                return self.placed_before(request, digest).await?.ok_or(PlaceOrderError::Unexpected(error));
            }
            other => other?,
        }
        bus::append(&mut tx, &placed, &ctx.metadata(Some(request.user_id.to_string()))).await?;
        tx.commit().await.map_err(anyhow::Error::from)?;
        tracing::info!(order_id = %order.id, total = %totals.total, "order placed");
        Ok(Placed::New(order.id))
    }

    /// The order this customer already placed with this key, if any.
    async fn placed_before(&self, request: &PlaceOrder, digest: &[u8]) -> Result<Option<Placed>, PlaceOrderError> {
        let mut db = self.pool.acquire().await.map_err(anyhow::Error::from)?;
        match orders::find_by_key(&mut db, request.user_id, &request.idempotency_key).await? {
            Some((id, stored)) if stored == digest => Ok(Some(Placed::Again(id))),
            Some(_) => Err(PlaceOrderError::KeyReused),
            None => Ok(None),
        }
    }
}
