//! Reconciliation: payments left pending or authorized beyond a threshold (a lost webhook, a
//! job out of attempts, a crash between the gateway's answer and our commit) are looked up at
//! the gateway and settled to what it says. Each run also forgets webhook event ids too old to
//! be replayed (their timestamps are refused anyway).

use chrono::TimeDelta;
use platform::jobs::{self, Job, JobContext};
use uuid::Uuid;

use super::PaymentsService;
use super::processing::follow_up;
use crate::domain::PaymentStatus;
use crate::gateway::GatewayPayment;
use crate::jobs::{Authorize, Capture, Reconcile, Void, schedule};
use crate::store::{payments, webhooks};

/// Payments one run looks at, at most.
const BATCH: i64 = 100;

/// How long webhook event ids are kept beyond the signature tolerance, to refuse replays.
const WEBHOOKS_KEPT: TimeDelta = TimeDelta::hours(24);

impl PaymentsService {
    /// One reconciliation run; returns how many payments it looked at.
    ///
    /// # Errors
    /// Database failures. A gateway that fails stops the run (the next one continues).
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
        for (done, id) in stuck.iter().enumerate() {
            if let Err(error) = self.settle(*id, ctx).await {
                tracing::warn!(payment_id = %id, error = format!("{error:#}"), "reconciliation stopped");
                return Ok(done);
            }
        }
        if !stuck.is_empty() {
            tracing::info!(count = stuck.len(), "reconciled stuck payments");
        }
        Ok(stuck.len())
    }

    /// Settles one payment to what the gateway says.
    async fn settle(&self, id: Uuid, ctx: &JobContext) -> anyhow::Result<()> {
        let seen = self.gateway.lookup(id).await?;
        let mut tx = self.pool.begin().await?;
        let Some(payment) = payments::lock(&mut tx, id).await? else { return Ok(()) };
        let status = payment.status()?;
        if !status.is_unsettled() {
            return Ok(());
        }
        let metadata = follow_up(&payment, &ctx.id, &format!("system:{}", Reconcile::QUEUE));
        // Later rounds of a job get keys of their own; the gateway keys stay the payment's.
        let round = format!("reconciled-{}", self.now().timestamp_millis());
        let round = Some(round.as_str());
        tracing::info!(payment_id = %id, %status, gateway = ?seen, "reconciling");
        match (status, seen) {
            (PaymentStatus::Pending, GatewayPayment::Unknown) if payment.cancel_requested => {
                self.record_voided(&mut tx, &payment, None).await?;
            }
            (PaymentStatus::Pending, GatewayPayment::Unknown) => {
                jobs::enqueue(&mut tx, &Authorize { payment_id: id }, schedule::<Authorize>(id, round)).await?;
                payments::touch(&mut tx, id, self.now()).await?;
            }
            (PaymentStatus::Pending, GatewayPayment::Processing { reference }) => {
                self.record_processing(&mut tx, &payment, &reference).await?;
                if payment.cancel_requested {
                    jobs::enqueue(&mut tx, &Void { payment_id: id }, schedule::<Void>(id, round)).await?;
                }
                payments::touch(&mut tx, id, self.now()).await?;
            }
            (PaymentStatus::Pending, GatewayPayment::Authorized { reference }) => {
                self.record_authorized(&mut tx, &payment, &reference).await?;
            }
            (PaymentStatus::Pending, GatewayPayment::Captured { reference }) => {
                self.record_authorized(&mut tx, &payment, &reference).await?;
                let authorized = payments::lock(&mut tx, id).await?.ok_or_else(|| anyhow::anyhow!("payment gone"))?;
                self.record_captured(&mut tx, &authorized, &metadata).await?;
            }
            (PaymentStatus::Authorized, GatewayPayment::Captured { .. }) => {
                self.record_captured(&mut tx, &payment, &metadata).await?;
            }
            (_, GatewayPayment::Declined { code, message }) => {
                self.record_failed(&mut tx, &payment, code, &message, &metadata).await?;
            }
            (_, GatewayPayment::Voided { reference }) => {
                self.record_voided(&mut tx, &payment, Some(&reference)).await?;
            }
            (PaymentStatus::Authorized, GatewayPayment::Authorized { .. }) => {
                if payment.cancel_requested {
                    jobs::enqueue(&mut tx, &Void { payment_id: id }, schedule::<Void>(id, round)).await?;
                } else {
                    jobs::enqueue(&mut tx, &Capture { payment_id: id }, schedule::<Capture>(id, round)).await?;
                }
                payments::touch(&mut tx, id, self.now()).await?;
            }
            (status, seen) => {
                tracing::error!(payment_id = %id, %status, gateway = ?seen, "the gateway disagrees; a person should look");
                payments::touch(&mut tx, id, self.now()).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
