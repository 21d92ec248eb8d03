//! Stock adjustments by admins: receive, correct, write off. Each is one immutable movement,
//! checked by `StockLevel::apply` and written by `levels::apply`, so on-hand never drops below
//! what is reserved and the sum of a product's movements stays its on-hand.

use anyhow::Context;
use inventory_contract::ProductId;
use platform::bus::Metadata;
use platform::http::{Page, PageRequest};

use super::InventoryService;
use super::levels::{self, StockError, Why};
use crate::domain::{Adjustment, AdjustmentKind, LevelChange, LevelError, MovementKind, StockLevel};
use crate::store::products;
use crate::store::stock::{self, MovementKey, MovementRow};

/// Failures of an adjustment.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdjustmentError {
    /// Unknown or archived.
    #[error("no such product")]
    NotFound,
    /// On-hand would fall below what is reserved, or below zero.
    #[error("only {available} units are available")]
    Insufficient { available: i32 },
    /// On-hand would exceed what can be counted.
    #[error("on-hand would exceed {} units", i32::MAX)]
    TooMany,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// What an adjustment did.
#[derive(Debug, Clone)]
pub(crate) struct Adjusted {
    pub(crate) movement: MovementRow,
    pub(crate) levels: StockLevel,
}

impl InventoryService {
    /// Records `adjustment` of a live product's on-hand, acted by `actor`.
    ///
    /// # Errors
    /// [`AdjustmentError::NotFound`], [`AdjustmentError::Insufficient`] (nothing is written),
    /// [`AdjustmentError::TooMany`].
    #[tracing::instrument(skip_all, fields(product_id = %product, delta = adjustment.delta), err(level = "info"))]
    pub(crate) async fn adjust_stock(
        &self,
        product: ProductId,
        adjustment: &Adjustment,
        actor: &str,
        metadata: &Metadata,
    ) -> Result<Adjusted, AdjustmentError> {
        let now = self.now();
        let mut tx = self.pool.begin().await.context("starting a stock adjustment")?;
        let mut levels = match stock::lock(&mut tx, &[product]).await?.into_iter().next() {
            Some(levels) if !levels.archived => levels,
            _ => return Err(AdjustmentError::NotFound),
        };
        let kind = match adjustment.kind {
            AdjustmentKind::Receive => MovementKind::Receive,
            AdjustmentKind::Correct => MovementKind::Correct,
            AdjustmentKind::WriteOff => MovementKind::WriteOff,
        };
        let change = LevelChange::count(kind, adjustment.delta);
        let why = Why { reason: &adjustment.reason, order_id: None, actor: Some(actor) };
        let movement_id = match levels::apply(&mut tx, &mut levels, change, why, metadata, now).await {
            Ok(id) => id.context("an adjustment moves on-hand, so it records a movement")?,
            Err(StockError::Refused(LevelError::Insufficient { available })) => {
                return Err(AdjustmentError::Insufficient { available });
            }
            Err(StockError::Refused(LevelError::TooMany)) => return Err(AdjustmentError::TooMany),
            Err(error) => return Err(error.into_unexpected().into()),
        };
        let movement = stock::movement(&mut tx, movement_id).await?;
        tx.commit().await.context("committing a stock adjustment")?;
        tracing::info!(kind = kind.as_str(), on_hand = levels.on_hand, "stock adjusted");
        Ok(Adjusted { movement, levels })
    }

    /// One page of a product's movements (archived products included: their history stays);
    /// `None` for an unknown product.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) async fn movements(
        &self,
        product: ProductId,
        kind: Option<MovementKind>,
        page: &PageRequest<MovementKey>,
    ) -> anyhow::Result<Option<Page<MovementRow>>> {
        let mut db = self.pool.acquire().await.context("listing stock movements")?;
        if products::find(&mut db, product).await?.is_none() {
            return Ok(None);
        }
        let rows = stock::movements(&mut db, product, kind, page).await?;
        Ok(Some(Page::from_overfetch(rows, page, |m| MovementKey(m.at, m.id))))
    }
}
