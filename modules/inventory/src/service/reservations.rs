//! Reservations for the order saga: all of an order's lines or none, never more than is
//! available (product rows are locked in id order, so concurrent orders queue instead of
//! overselling or deadlocking); committed on confirmation, released on cancellation or
//! expiry, restocked when a committed order is cancelled. Each is idempotent per order.

use std::collections::BTreeMap;

use inventory_contract::events::{
    RejectedLine, RejectionCode, ReservationExpired, ReservedLine, StockRejected, StockReserved,
};
use orders_contract::events::OrderPlaced;
use platform::bus::{self, Metadata};
use platform::jobs::{self, Schedule};
use sqlx::PgConnection;
use uuid::Uuid;

use super::InventoryService;
use super::levels::{self, LevelChange, StockError};
use crate::jobs::ReservationExpiry;
use crate::store::reservations::{self, Reservation, Status};
use crate::store::stock::{self, MovementKind};

/// What an expiry job found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    Expired,
    /// Not due yet (the job ran early): try again later.
    NotDue,
    /// Committed, released or already expired: nothing to do.
    Settled,
}

impl InventoryService {
    /// Reserves every line of a placed order, or none: `inventory.stock_reserved` with a
    /// time-to-live (and the expiry job), or `inventory.stock_rejected` with per-line reasons.
    ///
    /// # Errors
    /// Database failures.
    #[tracing::instrument(skip_all, fields(order_id = %order.order_id), err)]
    pub(crate) async fn reserve(
        &self,
        tx: &mut PgConnection,
        order: &OrderPlaced,
        metadata: &Metadata,
    ) -> anyhow::Result<()> {
        let order_id = order.order_id.0;
        if reservations::for_order(tx, order_id).await?.is_some() {
            tracing::info!("already reserved or rejected; nothing to do");
            return Ok(());
        }
        let mut wanted: BTreeMap<Uuid, i32> = BTreeMap::new();
        for line in &order.lines {
            let entry = wanted.entry(line.product_id).or_default();
            *entry = entry.saturating_add(i32::try_from(line.quantity).unwrap_or(i32::MAX));
        }
        let ids: Vec<Uuid> = wanted.keys().copied().collect();
        let mut locked = stock::lock(tx, &ids).await?;
        let now = self.now();
        let mut rejected = Vec::new();
        for (product, &quantity) in &wanted {
            let requested = u32::try_from(quantity).unwrap_or_default();
            let code = match locked.iter().find(|l| l.id == *product) {
                None => Some((RejectionCode::UnknownProduct, 0)),
                Some(l) if !l.active || l.archived => Some((RejectionCode::InactiveProduct, l.available())),
                Some(l) if l.available() < quantity => Some((RejectionCode::InsufficientStock, l.available())),
                Some(_) => None,
            };
            if let Some((code, available)) = code {
                let available = u32::try_from(available).unwrap_or_default();
                rejected.push(RejectedLine { product_id: *product, code, requested, available });
            }
        }
        let reservation_id = Uuid::now_v7();
        if !rejected.is_empty() {
            let record = Reservation {
                id: reservation_id,
                order_id,
                status: Status::Rejected,
                expires_at: None,
                lines: Vec::new(),
            };
            reservations::insert(tx, &record, now).await?;
            bus::append(tx, &StockRejected { order_id, lines: rejected, rejected_at: now }, metadata).await?;
            tracing::info!("stock rejected");
            return Ok(());
        }
        for levels in &mut locked {
            let quantity = wanted[&levels.id];
            let change = LevelChange {
                on_hand: 0,
                reserved: quantity,
                kind: None,
                reason: "reserved for an order",
                order_id: Some(order_id),
                actor: None,
            };
            levels::apply(tx, levels, &change, metadata, now).await.map_err(stock_error)?;
        }
        let expires_at = now + chrono::TimeDelta::from_std(self.config.reservation_ttl)?;
        let lines: Vec<(Uuid, i32)> = wanted.into_iter().collect();
        let record =
            Reservation { id: reservation_id, order_id, status: Status::Held, expires_at: Some(expires_at), lines };
        reservations::insert(tx, &record, now).await?;
        let reserved = StockReserved {
            order_id,
            reservation_id,
            lines: record
                .lines
                .iter()
                .map(|(product_id, quantity)| ReservedLine {
                    product_id: *product_id,
                    quantity: u32::try_from(*quantity).unwrap_or_default(),
                })
                .collect(),
            expires_at,
            reserved_at: now,
        };
        bus::append(tx, &reserved, metadata).await?;
        let expiry = ReservationExpiry { order_id, reservation_id, metadata: metadata.clone() };
        let schedule = Schedule {
            run_at: Some(expires_at),
            idempotency_key: Some(format!("{}:{reservation_id}", ReservationExpiry::QUEUE_NAME)),
            max_attempts: Some(jobs::DEADLINE_RETRY.max_attempts),
        };
        jobs::enqueue(tx, &expiry, schedule).await?;
        tracing::info!(%reservation_id, "stock reserved");
        Ok(())
    }

    /// The order was paid: its reserved units leave on-hand. After an expiry (a lagging
    /// subscription) the units are taken from on-hand anyway, as far as they are there.
    ///
    /// # Errors
    /// Database failures.
    #[tracing::instrument(skip_all, fields(order_id = %order_id), err)]
    pub(crate) async fn commit(
        &self,
        tx: &mut PgConnection,
        order_id: Uuid,
        metadata: &Metadata,
    ) -> anyhow::Result<()> {
        let Some(reservation) = reservations::for_order(tx, order_id).await? else {
            tracing::warn!("an order was confirmed without a reservation here");
            return Ok(());
        };
        let from_reserved = match reservation.status {
            Status::Held => true,
            Status::Expired => false,
            status => {
                tracing::info!(status = status.as_str(), "nothing to commit");
                return Ok(());
            }
        };
        let now = self.now();
        let ids: Vec<Uuid> = reservation.lines.iter().map(|l| l.0).collect();
        for mut levels in stock::lock(tx, &ids).await? {
            let quantity = reservation.lines.iter().find(|l| l.0 == levels.id).map_or(0, |l| l.1);
            let change = LevelChange {
                on_hand: -quantity,
                reserved: if from_reserved { -quantity } else { 0 },
                kind: Some(MovementKind::Commit),
                reason: "order confirmed",
                order_id: Some(order_id),
                actor: None,
            };
            match levels::apply(tx, &mut levels, &change, metadata, now).await {
                Ok(_) => {}
                Err(StockError::Insufficient { available }) => {
                    // Only after an expiry whose units were sold again: needs a person.
                    tracing::error!(product_id = %levels.id, quantity, available, "a paid order's units are no longer in stock");
                }
                Err(StockError::Unexpected(error)) => return Err(error),
            }
        }
        reservations::set_status(tx, reservation.id, Status::Committed, now).await?;
        Ok(())
    }

    /// The order was cancelled: held units are released; committed ones come back on hand.
    ///
    /// # Errors
    /// Database failures.
    #[tracing::instrument(skip_all, fields(order_id = %order_id), err)]
    pub(crate) async fn cancel(
        &self,
        tx: &mut PgConnection,
        order_id: Uuid,
        metadata: &Metadata,
    ) -> anyhow::Result<()> {
        let Some(reservation) = reservations::for_order(tx, order_id).await? else {
            tracing::info!("cancelled before anything was reserved");
            return Ok(());
        };
        let (next, restock) = match reservation.status {
            Status::Held => (Status::Released, false),
            Status::Committed => (Status::Restocked, true),
            status => {
                tracing::info!(status = status.as_str(), "nothing to release");
                return Ok(());
            }
        };
        let now = self.now();
        self.give_back(tx, &reservation, restock, metadata).await?;
        reservations::set_status(tx, reservation.id, next, now).await?;
        Ok(())
    }

    /// A reservation's time is up: its units are free again (`inventory.reservation_expired`).
    ///
    /// # Errors
    /// Database failures.
    #[tracing::instrument(skip_all, fields(order_id = %order_id), err)]
    pub(crate) async fn expire(
        &self,
        tx: &mut PgConnection,
        order_id: Uuid,
        metadata: &Metadata,
    ) -> anyhow::Result<Expiry> {
        let Some(reservation) = reservations::for_order(tx, order_id).await? else { return Ok(Expiry::Settled) };
        if reservation.status != Status::Held {
            return Ok(Expiry::Settled);
        }
        let now = self.now();
        if reservation.expires_at.is_some_and(|at| at > now) {
            return Ok(Expiry::NotDue);
        }
        self.give_back(tx, &reservation, false, metadata).await?;
        reservations::set_status(tx, reservation.id, Status::Expired, now).await?;
        let event = ReservationExpired { order_id, reservation_id: reservation.id, expired_at: now };
        bus::append(tx, &event, metadata).await?;
        tracing::info!(reservation_id = %reservation.id, "reservation expired");
        Ok(Expiry::Expired)
    }

    /// Releases held units, or restocks committed ones — exactly what the commit took, which
    /// after a late commit may be less than was reserved.
    async fn give_back(
        &self,
        tx: &mut PgConnection,
        reservation: &Reservation,
        restock: bool,
        metadata: &Metadata,
    ) -> anyhow::Result<()> {
        let now = self.now();
        let ids: Vec<Uuid> = reservation.lines.iter().map(|l| l.0).collect();
        let committed = if restock { stock::committed_for_order(tx, reservation.order_id).await? } else { Vec::new() };
        for mut levels in stock::lock(tx, &ids).await? {
            let quantity = if restock {
                committed.iter().find(|c| c.0 == levels.id).map_or(0, |c| c.1)
            } else {
                reservation.lines.iter().find(|l| l.0 == levels.id).map_or(0, |l| l.1)
            };
            if quantity == 0 {
                continue;
            }
            let change = if restock {
                LevelChange {
                    on_hand: quantity,
                    reserved: 0,
                    kind: Some(MovementKind::Restock),
                    reason: "order cancelled after it was paid",
                    order_id: Some(reservation.order_id),
                    actor: None,
                }
            } else {
                LevelChange {
                    on_hand: 0,
                    reserved: -quantity,
                    kind: None,
                    reason: "reservation released",
                    order_id: Some(reservation.order_id),
                    actor: None,
                }
            };
            levels::apply(tx, &mut levels, &change, metadata, now).await.map_err(stock_error)?;
        }
        Ok(())
    }
}

fn stock_error(error: StockError) -> anyhow::Error {
    match error {
        StockError::Insufficient { available } => anyhow::anyhow!("stock levels would break (available {available})"),
        StockError::Unexpected(error) => error,
    }
}
