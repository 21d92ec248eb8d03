//! Recording what the gateway did, under the payment's lock. These are the only writers of
//! payment statuses, ledger entries and payment events; each checks the transition first, so
//! an outcome learned twice (job, webhook, reconciliation) is applied once. Where the gateway
//! holds money the payment no longer wants, a release job is enqueued.

use payments_contract::PaymentId;
use payments_contract::events::{FailureCode, PaymentCaptured, PaymentFailed, PaymentRefunded};
use platform::bus::{self, Metadata};
use platform::jobs;
use sqlx::PgConnection;
use uuid::Uuid;

use super::PaymentsService;
use super::{Capture, Release, Void};
use crate::domain::{EntryKind, PaymentStatus};
use crate::gateway::GatewayPayment;
use crate::store::payments::{self, Change, PaymentRow};
use crate::store::{ledger, refunds};

impl PaymentsService {
    /// Pending → authorized: the hold in the ledger, then the capture (or, for a cancelled
    /// order, the void) as a job. An authorization of a payment already over (failed, or
    /// voided before the gateway's answer was known) is released at the gateway instead.
    /// Returns whether the payment changed.
    pub(crate) async fn record_authorized(
        &self,
        tx: &mut PgConnection,
        payment: &PaymentRow,
        reference: &str,
    ) -> anyhow::Result<bool> {
        let status = payment.status;
        let Ok(next) = status.authorize() else {
            if matches!(status, PaymentStatus::Failed | PaymentStatus::Voided) {
                tracing::warn!(%status, "the gateway authorized a payment that is over; releasing the hold");
                self.enqueue_release(tx, payment.id, reference).await?;
            } else {
                tracing::info!(%status, "already past authorization; nothing to record");
            }
            return Ok(false);
        };
        let now = self.now();
        let change = Change { gateway_reference: Some(reference), ..Change::default() };
        payments::update(tx, payment.id, next, &change, now).await?;
        let currency = payment.currency.as_str();
        ledger::record(tx, payment.id, EntryKind::Authorization, payment.amount, currency, None, reference, now)
            .await?;
        if payment.cancel_requested {
            jobs::enqueue(tx, &Void { payment_id: payment.id }, self.schedule::<Void>(payment.id, None)).await?;
        } else {
            let job = Capture { payment_id: payment.id };
            jobs::enqueue(tx, &job, self.schedule::<Capture>(payment.id, None)).await?;
        }
        tracing::info!(payment_id = %payment.id, "authorized");
        Ok(true)
    }

    async fn enqueue_release(
        &self,
        tx: &mut PgConnection,
        payment_id: PaymentId,
        reference: &str,
    ) -> anyhow::Result<()> {
        let job = Release { payment_id, reference: reference.to_owned() };
        jobs::enqueue(tx, &job, self.schedule::<Release>(payment_id, None)).await?;
        Ok(())
    }

    /// The gateway answered "processing": its reference is kept, the payment stays pending.
    /// If the order was cancelled meanwhile, the void goes out now.
    pub(crate) async fn record_processing(
        &self,
        tx: &mut PgConnection,
        payment: &PaymentRow,
        reference: &str,
    ) -> anyhow::Result<()> {
        if payment.status == PaymentStatus::Pending && payment.gateway_reference.is_none() {
            let change = Change { gateway_reference: Some(reference), ..Change::default() };
            payments::update(tx, payment.id, PaymentStatus::Pending, &change, self.now()).await?;
            if payment.cancel_requested {
                jobs::enqueue(tx, &Void { payment_id: payment.id }, self.schedule::<Void>(payment.id, None)).await?;
            }
        }
        Ok(())
    }

    /// Authorized → captured: the capture in the ledger and `payments.payment_captured`.
    /// Returns whether the payment changed.
    pub(crate) async fn record_captured(
        &self,
        tx: &mut PgConnection,
        payment: &PaymentRow,
        metadata: &Metadata,
    ) -> anyhow::Result<bool> {
        let Ok(next) = payment.status.capture() else {
            tracing::info!(status = %payment.status, "not authorized; no capture to record");
            return Ok(false);
        };
        let now = self.now();
        let reference = reference_of(payment)?;
        let change = Change { captured: Some(payment.amount), ..Change::default() };
        payments::update(tx, payment.id, next, &change, now).await?;
        ledger::record(tx, payment.id, EntryKind::Capture, payment.amount, &payment.currency, None, reference, now)
            .await?;
        let event = PaymentCaptured {
            payment_id: payment.id,
            order_id: payment.order_id.0,
            amount: payment.money(payment.amount)?,
            captured_at: now,
        };
        bus::append(tx, &event, metadata).await?;
        tracing::info!(payment_id = %payment.id, "captured");
        Ok(true)
    }

    /// Pending or authorized → failed, with `payments.payment_failed`. An authorization the
    /// gateway holds (its capture was declined) is released by a job, which records the void.
    /// Returns whether the payment changed.
    pub(crate) async fn record_failed(
        &self,
        tx: &mut PgConnection,
        payment: &PaymentRow,
        code: FailureCode,
        message: &str,
        metadata: &Metadata,
    ) -> anyhow::Result<bool> {
        let status = payment.status;
        let Ok(next) = status.fail() else {
            tracing::info!(status = %payment.status, "already settled; the failure changes nothing");
            return Ok(false);
        };
        let now = self.now();
        let change = Change { failure: Some((code.as_str(), message)), ..Change::default() };
        payments::update(tx, payment.id, next, &change, now).await?;
        if status == PaymentStatus::Authorized {
            self.enqueue_release(tx, payment.id, reference_of(payment)?).await?;
        }
        let event = PaymentFailed {
            payment_id: payment.id,
            order_id: payment.order_id.0,
            code,
            message: Some(message.to_owned()),
            failed_at: now,
        };
        bus::append(tx, &event, metadata).await?;
        tracing::info!(payment_id = %payment.id, code = code.as_str(), "failed");
        Ok(true)
    }

    /// Pending or authorized → voided, once the gateway released it (or never saw it). A hold
    /// that was recorded is released in the ledger. No event: the order was cancelled already
    /// and no money moved. Returns whether the payment changed.
    pub(crate) async fn record_voided(
        &self,
        tx: &mut PgConnection,
        payment: &PaymentRow,
        reference: Option<&str>,
    ) -> anyhow::Result<bool> {
        let status = payment.status;
        let Ok(next) = status.void() else {
            tracing::info!(status = %payment.status, "already settled; nothing to void");
            return Ok(false);
        };
        let now = self.now();
        payments::update(tx, payment.id, next, &Change::default(), now).await?;
        if status == PaymentStatus::Authorized {
            let reference = match reference {
                Some(reference) => reference,
                None => reference_of(payment)?,
            };
            ledger::record(tx, payment.id, EntryKind::Void, payment.amount, &payment.currency, None, reference, now)
                .await?;
        }
        tracing::info!(payment_id = %payment.id, "voided");
        Ok(true)
    }

    /// Brings the payment to what the gateway says it is (reconciliation, and a void that had
    /// to ask first).
    pub(crate) async fn adopt(
        &self,
        tx: &mut PgConnection,
        payment: &PaymentRow,
        seen: &GatewayPayment,
        metadata: &Metadata,
    ) -> anyhow::Result<()> {
        match seen {
            GatewayPayment::Unknown => {
                if payment.cancel_requested {
                    self.record_voided(tx, payment, None).await?;
                }
            }
            GatewayPayment::Processing { reference } => self.record_processing(tx, payment, reference).await?,
            GatewayPayment::Authorized { reference } => {
                self.record_authorized(tx, payment, reference).await?;
            }
            GatewayPayment::Captured { reference } => {
                // Taken at the gateway: recorded as such, even for a cancelled order (orders
                // then asks for the refund of a late capture).
                if self.record_authorized(tx, payment, reference).await? {
                    let authorized =
                        payments::lock(tx, payment.id).await?.ok_or_else(|| anyhow::anyhow!("payment gone"))?;
                    self.record_captured(tx, &authorized, metadata).await?;
                } else {
                    self.record_captured(tx, payment, metadata).await?;
                }
            }
            GatewayPayment::Voided { reference } => {
                self.record_voided(tx, payment, Some(reference)).await?;
            }
            GatewayPayment::Declined { code, message } => {
                self.record_failed(tx, payment, *code, message, metadata).await?;
            }
        }
        Ok(())
    }

    /// Ends a pending refund: on success the refund in the ledger, the payment's status and
    /// `payments.payment_refunded`; on a refusal the refund is failed with the gateway's words.
    pub(crate) async fn record_refund(
        &self,
        tx: &mut PgConnection,
        payment: &PaymentRow,
        refund_id: Uuid,
        outcome: Result<&str, &str>,
        metadata: &Metadata,
    ) -> anyhow::Result<()> {
        let now = self.now();
        let Some(refund) = refunds::find(tx, refund_id).await? else {
            anyhow::bail!("refund {refund_id} does not exist");
        };
        if !refunds::complete(tx, refund_id, outcome, now).await? {
            return Ok(());
        }
        let reference = match outcome {
            Ok(reference) => reference,
            Err(message) => {
                let detail = format!("refund {refund_id} of {} refused: {message}", refund.amount);
                self.flag(tx, payment, super::attention::Attention::RefundRefused, &detail).await?;
                return Ok(());
            }
        };
        let refunded = payment.refunded + refund.amount;
        let next = payment.status.refund(refunded, payment.captured)?;
        let change = Change { refunded: Some(refunded), ..Change::default() };
        payments::update(tx, payment.id, next, &change, now).await?;
        let currency = payment.currency.as_str();
        ledger::record(tx, payment.id, EntryKind::Refund, refund.amount, currency, Some(refund_id), reference, now)
            .await?;
        let event = PaymentRefunded {
            payment_id: payment.id,
            order_id: payment.order_id.0,
            refund_id,
            amount: payment.money(refund.amount)?,
            total_refunded: payment.money(refunded)?,
            fully_refunded: next == PaymentStatus::Refunded,
            refunded_at: now,
        };
        bus::append(tx, &event, metadata).await?;
        tracing::info!(payment_id = %payment.id, %refund_id, amount = refund.amount, "refunded");
        Ok(())
    }
}

/// The gateway's reference of a payment it has authorized; the ledger never records a
/// movement without one.
fn reference_of(payment: &PaymentRow) -> anyhow::Result<&str> {
    payment
        .gateway_reference
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("payment {} has no gateway reference", payment.id))
}
