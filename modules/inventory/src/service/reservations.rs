//! Reservations for the order saga: all of an order's lines or none, never more than is
//! available (product rows are locked in id order, so concurrent orders queue instead of
//! overselling or deadlocking); committed on confirmation, released on cancellation or
//! expiry, restocked when a committed order is cancelled. Each is idempotent per order.
//! What each step decides is the domain's (`domain::reservation`, `StockLevel::apply`);
//! this file locks, asks and stores.

use inventory_contract::ProductId;
use inventory_contract::events::{ReservationExpired, ReservedLine, StockRejected, StockReserved};
use orders_contract::OrderId;
use orders_contract::events::OrderPlaced;
use platform::bus::{self, Metadata};
use platform::jobs::{self, Job, Schedule};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use super::InventoryService;
use super::levels::{self, StockError, Why};
use crate::domain::{self, Decision, Expiry, GiveBack, LevelChange, LevelError, ReservationStatus as Status};
use crate::store::reservations::{self, Reservation};
use crate::store::stock;

/// The expiry of one order's reservation: enqueued with the reservation, run by
/// `jobs::ReservationExpiryHandler` when its time-to-live is up. Defined by the use case that
/// enqueues it, so the service does not depend on the job runner.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReservationExpiry {
    pub(crate) order_id: OrderId,
    pub(crate) reservation_id: Uuid,
    /// The metadata of what reserved, so the expiry continues its correlation.
    pub(crate) metadata: Metadata,
}

impl ReservationExpiry {
    pub(crate) const QUEUE_NAME: &'static str = "inventory.reservation_expiry";
}

impl Job for ReservationExpiry {
    const QUEUE: &'static str = Self::QUEUE_NAME;
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
        let order_id = order.order_id;
        if reservations::for_order(tx, order_id).await?.is_some() {
            tracing::info!("already reserved or rejected; nothing to do");
            return Ok(());
        }
        let wanted = domain::wanted(order.lines.iter().map(|line| (line.product_id, line.quantity)));
        let ids: Vec<ProductId> = wanted.keys().copied().collect();
        let mut locked = stock::lock(tx, &ids).await?;
        let now = self.now();
        let reservation_id = Uuid::now_v7();
        let lines = match domain::decide(&wanted, &locked) {
            Decision::Reserve(lines) => lines,
            Decision::Reject(rejected) => {
                let record = Reservation {
                    id: reservation_id,
                    order_id,
                    status: Status::Rejected,
                    expires_at: None,
                    lines: Vec::new(),
                };
                reservations::insert(tx, &record, now).await?;
                bus::append(tx, &StockRejected { order_id: order_id.0, lines: rejected, rejected_at: now }, metadata)
                    .await?;
                tracing::info!("stock rejected");
                return Ok(());
            }
        };
        let why = Why { reason: "reserved for an order", order_id: Some(order_id), actor: None };
        for level in &mut locked {
            let change = LevelChange::reserve(wanted[&level.id].as_i32());
            levels::apply(tx, level, change, why, metadata, now).await.map_err(StockError::into_unexpected)?;
        }
        let expires_at = now + chrono::TimeDelta::from_std(self.config.reservation_ttl)?;
        let record =
            Reservation { id: reservation_id, order_id, status: Status::Held, expires_at: Some(expires_at), lines };
        reservations::insert(tx, &record, now).await?;
        let reserved = StockReserved {
            order_id: order_id.0,
            reservation_id,
            lines: record.lines.iter().map(|&(product_id, quantity)| ReservedLine { product_id, quantity }).collect(),
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
        order_id: OrderId,
        metadata: &Metadata,
    ) -> anyhow::Result<()> {
        let Some(reservation) = reservations::for_order(tx, order_id).await? else {
            tracing::warn!("an order was confirmed without a reservation here");
            return Ok(());
        };
        let Some(held) = reservation.status.commit() else {
            tracing::info!(status = reservation.status.as_str(), "nothing to commit");
            return Ok(());
        };
        let now = self.now();
        let why = Why { reason: "order confirmed", order_id: Some(order_id), actor: None };
        let ids: Vec<ProductId> = reservation.lines.iter().map(|l| l.0).collect();
        for mut level in stock::lock(tx, &ids).await? {
            let quantity = reservation.lines.iter().find(|l| l.0 == level.id).map_or(0, |l| l.1.as_i32());
            match levels::apply(tx, &mut level, LevelChange::commit(quantity, held), why, metadata, now).await {
                Ok(_) => {}
                Err(StockError::Refused(LevelError::Insufficient { available })) => {
                    // Only after an expiry whose units were sold again: needs a person.
                    tracing::error!(product_id = %level.id, quantity, available, "a paid order's units are no longer in stock");
                }
                Err(error) => return Err(error.into_unexpected()),
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
        order_id: OrderId,
        metadata: &Metadata,
    ) -> anyhow::Result<()> {
        let Some(reservation) = reservations::for_order(tx, order_id).await? else {
            tracing::info!("cancelled before anything was reserved");
            return Ok(());
        };
        let Some(give_back) = reservation.status.cancel() else {
            tracing::info!(status = reservation.status.as_str(), "nothing to release");
            return Ok(());
        };
        let now = self.now();
        self.give_back(tx, &reservation, give_back, metadata).await?;
        reservations::set_status(tx, reservation.id, give_back.next(), now).await?;
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
        order_id: OrderId,
        metadata: &Metadata,
    ) -> anyhow::Result<Expiry> {
        let Some(reservation) = reservations::for_order(tx, order_id).await? else { return Ok(Expiry::Settled) };
        let now = self.now();
        match reservation.status.expire(reservation.expires_at, now) {
            Expiry::Expired => {}
            other => return Ok(other),
        }
        self.give_back(tx, &reservation, GiveBack::Release, metadata).await?;
        reservations::set_status(tx, reservation.id, Status::Expired, now).await?;
        let event = ReservationExpired { order_id: order_id.0, reservation_id: reservation.id, expired_at: now };
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
        how: GiveBack,
        metadata: &Metadata,
    ) -> anyhow::Result<()> {
        let now = self.now();
        let ids: Vec<ProductId> = reservation.lines.iter().map(|l| l.0).collect();
        let (units_per_product, reason) = match how {
            GiveBack::Restock => {
                (stock::committed_for_order(tx, reservation.order_id).await?, "order cancelled after it was paid")
            }
            GiveBack::Release => (reservation.lines.clone(), "reservation released"),
        };
        let why = Why { reason, order_id: Some(reservation.order_id), actor: None };
        for mut level in stock::lock(tx, &ids).await? {
            let Some(&(_, quantity)) = units_per_product.iter().find(|l| l.0 == level.id) else {
                continue;
            };
            let change = match how {
                GiveBack::Restock => LevelChange::restock(quantity.as_i32()),
                GiveBack::Release => LevelChange::release(quantity.as_i32()),
            };
            levels::apply(tx, &mut level, change, why, metadata, now).await.map_err(StockError::into_unexpected)?;
        }
        Ok(())
    }
}
