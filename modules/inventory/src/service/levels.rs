//! Storing a stock change the domain accepted: the new levels, the movement when on-hand
//! moved, and `inventory.low_stock` when availability crossed the threshold — all in the
//! caller's transaction. The rule itself is [`StockLevel::apply`].

use chrono::{DateTime, Utc};
use inventory_contract::events::LowStock;
use orders_contract::OrderId;
use platform::bus::{self, Metadata};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{LevelChange, LevelError, StockLevel};
use crate::store::stock::{self, NewMovement};

/// Who and why, recorded with the movement.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Why<'a> {
    pub(crate) reason: &'a str,
    pub(crate) order_id: Option<OrderId>,
    pub(crate) actor: Option<&'a str>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum StockError {
    /// The domain refused the change; nothing was written.
    #[error(transparent)]
    Refused(#[from] LevelError),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl StockError {
    /// For callers to whom a refusal is a broken assumption, not a business case.
    pub(crate) fn into_unexpected(self) -> anyhow::Error {
        match self {
            Self::Refused(refusal) => anyhow::anyhow!("stock levels would break: {refusal}"),
            Self::Unexpected(error) => error,
        }
    }
}

/// Applies `change` to `level` (locked by the caller's transaction) and writes it. Returns
/// the id of the movement recorded, when on-hand moved.
///
/// # Errors
/// [`StockError::Refused`] when the levels would break their invariants (nothing written).
pub(crate) async fn apply(
    tx: &mut PgConnection,
    level: &mut StockLevel,
    change: LevelChange,
    why: Why<'_>,
    metadata: &Metadata,
    at: DateTime<Utc>,
) -> Result<Option<Uuid>, StockError> {
    let applied = level.apply(change)?;
    stock::write(tx, level, at).await?;
    let mut movement_id = None;
    if let Some((kind, quantity)) = applied.movement {
        let movement = NewMovement {
            product_id: level.id,
            kind,
            quantity,
            on_hand_after: level.on_hand,
            reason: why.reason,
            order_id: why.order_id,
            actor: why.actor,
            at,
        };
        movement_id = Some(stock::record_movement(tx, &movement).await?);
    }
    if let Some(crossing) = applied.low_stock {
        let event = LowStock {
            product_id: level.id,
            sku: level.sku.clone(),
            name: level.name.clone(),
            available: crossing.available,
            threshold: crossing.threshold,
            at,
        };
        bus::append(tx, &event, metadata).await?;
        tracing::info!(product_id = %level.id, crossing.available, crossing.threshold, "low stock");
    }
    Ok(movement_id)
}
