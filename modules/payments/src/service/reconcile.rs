//! Reconciliation: payments left pending or authorized beyond a threshold (a lost webhook, a
//! job out of attempts, a crash between the gateway's answer and our commit) are looked up at
//! the gateway and settled to what it says. Refunds left pending as long are asked again. Each
//! run also forgets webhook event ids too old to be replayed (their timestamps are refused
//! anyway).
//!
//! A payment reconciliation cannot settle does not stay open forever (ADR 0021): once it is
//! older than `give_up_after`, it ends `failed` (whatever the gateway still holds for it is
//! released by a job) and is flagged for a person, who acknowledges it once it is settled with
//! the processor. What the gateway says that our records cannot follow is flagged at once.

use chrono::TimeDelta;
use platform::jobs::{self, Job, JobContext};
use sqlx::PgConnection;

use payments_contract::PaymentId;
use payments_contract::events::FailureCode;

use super::PaymentsService;
use super::attention::Attention;
use super::{Authorize, Capture, Reconcile, Refund, Release, Void};
use crate::domain::PaymentStatus;
use crate::gateway::{GatewayError, GatewayPayment};
use crate::store::payments::PaymentRow;
use crate::store::{payments, refunds, webhooks};

/// Payments one run looks at, at most.
const BATCH: i64 = 100;

/// How long webhook event ids are kept beyond the signature tolerance, to refuse replays.
const WEBHOOKS_KEPT: TimeDelta = TimeDelta::hours(24);

impl PaymentsService {
    /// One reconciliation run; returns how many payments it looked at.
    ///
    /// # Errors
    /// Database failures. A gateway that is down stops the run (the next one continues); a
    /// payment that cannot be settled is logged and left for the next run.
    #[tracing::instrument(skip_all, fields(job_id = %ctx.id), err)]
    pub(crate) async fn reconcile(&self, ctx: &JobContext) -> anyhow::Result<usize> {
        let before = self.now() - TimeDelta::from_std(self.config.reconcile_after)?;
        let stuck = {
            let mut db = self.pool.acquire().await?;
            let forget = self.now() - TimeDelta::from_std(self.config.webhook_tolerance)? - WEBHOOKS_KEPT;
            let forgotten = webhooks::forget_before(&mut db, forget).await?;
            if forgotten > 0 {
                tracing::debug!(forgotten, "forgot webhook events past their replay window");
            }
            payments::unsettled(&mut db, before, BATCH).await?
        };
        self.retry_stuck_refunds(before).await?;
        for (done, id) in stuck.iter().enumerate() {
            match self.settle(*id, ctx).await {
                Ok(()) => {}
                Err(Unsettled::GatewayDown(error)) => {
                    tracing::warn!(payment_id = %id, %error, "the gateway is down; reconciliation stops until the next run");
                    return Ok(done);
                }
                Err(Unsettled::Failed(error)) => {
                    tracing::error!(payment_id = %id, error = format!("{error:#}"), "could not reconcile a payment");
                    let mut db = self.pool.acquire().await?;
                    payments::touch(&mut db, *id, self.now()).await?;
                }
            }
        }
        if !stuck.is_empty() {
            tracing::info!(count = stuck.len(), "reconciled stuck payments");
        }
        self.count_needing_attention(&mut *self.pool.acquire().await?).await?;
        Ok(stuck.len())
    }

    /// Refunds whose jobs gave up (attempts spent during a long outage) get a new job; the
    /// gateway key stays the refund's, so none is paid twice.
    async fn retry_stuck_refunds(&self, before: chrono::DateTime<chrono::Utc>) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        let now = self.now();
        let stuck = refunds::stuck(&mut tx, before, now, BATCH).await?;
        let round = format!("reconciled-{}", now.timestamp_millis());
        for id in &stuck {
            jobs::enqueue(&mut tx, &Refund { refund_id: *id }, self.schedule::<Refund>(*id, Some(&round))).await?;
        }
        tx.commit().await?;
        if !stuck.is_empty() {
            tracing::warn!(count = stuck.len(), "refunds still pending: asked again");
        }
        Ok(())
    }

    /// Settles one payment to what the gateway says.
    async fn settle(&self, id: PaymentId, ctx: &JobContext) -> Result<(), Unsettled> {
        let seen = match self.gateway.lookup(id.into_inner()).await {
            Ok(seen) => seen,
            Err(error) if error.is_transient() => return Err(Unsettled::GatewayDown(error)),
            Err(error) => return Err(Unsettled::Failed(error.into())),
        };
        let mut tx = self.pool.begin().await.map_err(|e| Unsettled::Failed(e.into()))?;
        self.settle_to(&mut tx, id, seen, ctx).await.map_err(Unsettled::Failed)?;
        tx.commit().await.map_err(|e| Unsettled::Failed(e.into()))
    }

    async fn settle_to(
        &self,
        tx: &mut PgConnection,
        id: PaymentId,
        seen: GatewayPayment,
        ctx: &JobContext,
    ) -> anyhow::Result<()> {
        let Some(payment) = payments::lock(tx, id).await? else { return Ok(()) };
        let status = payment.status;
        if !status.is_unsettled() {
            return Ok(());
        }
        let metadata = ctx.follow_up(&payment.metadata.0, Reconcile::QUEUE);
        // Later rounds of a job get keys of their own; the gateway keys stay the payment's.
        let round = format!("reconciled-{}", self.now().timestamp_millis());
        let round = Some(round.as_str());
        tracing::info!(payment_id = %id, %status, gateway = ?seen, "reconciling");
        let give_up_at = payment.created_at + TimeDelta::from_std(self.config.give_up_after)?;
        if self.now() >= give_up_at && !Self::settles(&seen) {
            return self.give_up(tx, &payment, &seen, &metadata).await;
        }
        match (status, &seen) {
            (PaymentStatus::Pending, GatewayPayment::Unknown) if payment.gateway_reference.is_some() => {
                // It answered "processing" with this reference, and now knows nothing of it.
                let detail = "the gateway no longer knows an authorization it said it was processing";
                if payment.attention.is_none() {
                    self.flag(tx, &payment, Attention::GatewayDisagrees, detail).await?;
                }
            }
            (PaymentStatus::Pending, GatewayPayment::Unknown) if !payment.cancel_requested => {
                // Never reached the gateway (or its attempts ran out): authorize again.
                jobs::enqueue(tx, &Authorize { payment_id: id }, self.schedule::<Authorize>(id, round)).await?;
            }
            (PaymentStatus::Pending, GatewayPayment::Processing { .. }) if payment.gateway_reference.is_some() => {
                if payment.cancel_requested {
                    jobs::enqueue(tx, &Void { payment_id: id }, self.schedule::<Void>(id, round)).await?;
                }
            }
            (PaymentStatus::Authorized, GatewayPayment::Authorized { .. }) => {
                // The capture (or void) job gave up: ask again.
                if payment.cancel_requested {
                    jobs::enqueue(tx, &Void { payment_id: id }, self.schedule::<Void>(id, round)).await?;
                } else {
                    jobs::enqueue(tx, &Capture { payment_id: id }, self.schedule::<Capture>(id, round)).await?;
                }
            }
            (PaymentStatus::Authorized, GatewayPayment::Unknown | GatewayPayment::Processing { .. }) => {
                if payment.attention.is_none() {
                    let detail = format!("we hold an authorization the gateway reports as {seen:?}");
                    self.flag(tx, &payment, Attention::GatewayDisagrees, &detail).await?;
                }
            }
            _ => self.adopt(tx, &payment, &seen, &metadata).await?,
        }
        payments::touch(tx, id, self.now()).await?;
        Ok(())
    }

    /// Whether adopting what the gateway says ends the payment (or moves it on by itself).
    fn settles(seen: &GatewayPayment) -> bool {
        matches!(
            seen,
            GatewayPayment::Authorized { .. }
                | GatewayPayment::Captured { .. }
                | GatewayPayment::Voided { .. }
                | GatewayPayment::Declined { .. }
        )
    }

    /// Ends a payment the gateway would not settle in time: failed (orders cancels its order,
    /// if it still waits), anything the gateway holds released by a job, a person flagged.
    async fn give_up(
        &self,
        tx: &mut PgConnection,
        payment: &PaymentRow,
        seen: &GatewayPayment,
        metadata: &platform::bus::Metadata,
    ) -> anyhow::Result<()> {
        let status = payment.status;
        let age = self.now() - payment.created_at;
        let detail = format!("still {status} after {} minutes; the gateway reports {seen:?}", age.num_minutes());
        let message = "The payment processor never settled this payment.";
        self.record_failed(tx, payment, FailureCode::ProcessingError, message, metadata).await?;
        if let (PaymentStatus::Pending, GatewayPayment::Processing { reference }) = (status, seen) {
            // A hold the gateway may still turn into an authorization: release it.
            jobs::enqueue(
                tx,
                &Release { payment_id: payment.id, reference: reference.clone() },
                self.schedule::<Release>(payment.id, None),
            )
            .await?;
        }
        self.flag(tx, payment, Attention::ReconciliationGaveUp, &detail).await?;
        payments::touch(tx, payment.id, self.now()).await?;
        Ok(())
    }
}

/// Why a payment was not settled.
#[derive(Debug)]
enum Unsettled {
    /// The gateway is unreachable: stop this run.
    GatewayDown(GatewayError),
    /// This payment could not be settled; go on with the others.
    Failed(anyhow::Error),
}
