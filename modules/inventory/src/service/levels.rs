//! The one way stock levels change: checked so on-hand and reserved never go negative and
//! reserved never exceeds on-hand, recorded as a movement when on-hand moves, and watched
//! for the low-stock threshold (`inventory.low_stock`, once per crossing).

use chrono::{DateTime, Utc};
use inventory_contract::events::LowStock;
use platform::bus::{self, Metadata};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::store::stock::{self, Levels, MovementKind, NewMovement};

/// A change to apply to one product's levels.
#[derive(Debug, Clone)]
pub(crate) struct LevelChange<'a> {
    pub(crate) on_hand: i32,
    pub(crate) reserved: i32,
    /// Why on-hand moves (required when `on_hand` is not zero).
    pub(crate) kind: Option<MovementKind>,
    pub(crate) reason: &'a str,
    pub(crate) order_id: Option<Uuid>,
    pub(crate) actor: Option<&'a str>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum StockError {
    /// The change would leave fewer units than are reserved, or fewer than none.
    #[error("only {available} units are available")]
    Insufficient { available: i32 },
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Applies `change` to `levels` (locked by the caller's transaction) and writes it. Returns
/// the id of the movement recorded, when on-hand moved.
///
/// # Errors
/// [`StockError::Insufficient`] when the levels would break their invariants.
pub(crate) async fn apply(
    tx: &mut PgConnection,
    levels: &mut Levels,
    change: &LevelChange<'_>,
    metadata: &Metadata,
    at: DateTime<Utc>,
) -> Result<Option<Uuid>, StockError> {
    let on_hand =
        levels.on_hand.checked_add(change.on_hand).ok_or(StockError::Insufficient { available: levels.available() })?;
    let reserved = levels
        .reserved
        .checked_add(change.reserved)
        .ok_or(StockError::Insufficient { available: levels.available() })?;
    if on_hand < 0 || reserved < 0 || reserved > on_hand {
        return Err(StockError::Insufficient { available: levels.available() });
    }
    levels.on_hand = on_hand;
    levels.reserved = reserved;
    let available = levels.available();
    let threshold = levels.low_stock_threshold;
    let crossed_down = threshold > 0 && available <= threshold && !levels.low_stock_alerted;
    if crossed_down {
        levels.low_stock_alerted = true;
    } else if available > threshold {
        levels.low_stock_alerted = false;
    }
    stock::write(tx, levels, at).await?;
    let mut movement_id = None;
    if change.on_hand != 0 {
        let kind = change.kind.ok_or_else(|| anyhow::anyhow!("on-hand changed without a movement kind"))?;
        let movement = NewMovement {
            product_id: levels.id,
            kind,
            quantity: change.on_hand,
            on_hand_after: on_hand,
            reason: change.reason,
            order_id: change.order_id,
            actor: change.actor,
            at,
        };
        movement_id = Some(stock::record_movement(tx, &movement).await?);
    }
    if crossed_down {
        let event = LowStock {
            product_id: levels.id,
            sku: levels.sku.clone(),
            name: levels.name.clone(),
            available: u32::try_from(available).unwrap_or_default(),
            threshold: u32::try_from(threshold).unwrap_or_default(),
            at,
        };
        bus::append(tx, &event, metadata).await?;
        tracing::info!(product_id = %levels.id, available, threshold, "low stock");
    }
    Ok(movement_id)
}
