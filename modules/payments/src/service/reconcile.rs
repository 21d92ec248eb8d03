//! Reconciliation: payments left pending or authorized beyond a threshold (a lost webhook, a
//! job out of attempts, a crash between the gateway's answer and our commit) are looked up at
//! the gateway and settled to what it says. Refunds left pending as long are asked again. Each
//! run also forgets webhook event ids too old to be replayed (their timestamps are refused
//! anyway).

use chrono::TimeDelta;
use platform::jobs::{self, Job, JobContext};
use sqlx::PgConnection;
use uuid::Uuid;

use super::PaymentsService;
use crate::domain::PaymentStatus;
use crate::gateway::{GatewayError, GatewayPayment};
use crate::jobs::{Authorize, Capture, Reconcile, Refund, Void};
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
    async fn settle(&self, id: Uuid, ctx: &JobContext) -> Result<(), Unsettled> {
        let seen = match self.gateway.lookup(id).await {
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
        id: Uuid,
        seen: GatewayPayment,
        ctx: &JobContext,
    ) -> anyhow::Result<()> {
        let Some(payment) = payments::lock(tx, id).await? else { return Ok(()) };
        let status = payment.status()?;
        if !status.is_unsettled() {
            return Ok(());
        }
        let metadata = ctx.follow_up(&payment.metadata.0, Reconcile::QUEUE);
        // Later rounds of a job get keys of their own; the gateway keys stay the payment's.
        let round = format!("reconciled-{}", self.now().timestamp_millis());
        let round = Some(round.as_str());
        tracing::info!(payment_id = %id, %status, gateway = ?seen, "reconciling");
        match (status, &seen) {
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
                tracing::error!(payment_id = %id, %status, gateway = ?seen, "the gateway disagrees; a person should look");
            }
            _ => self.adopt(tx, &payment, &seen, &metadata).await?,
        }
        payments::touch(tx, id, self.now()).await?;
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
