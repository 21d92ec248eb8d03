//! Moving a payment along with the gateway, in jobs: authorize, capture, void, refund. A job
//! reads the payment, calls the gateway (no transaction open during the call), then records
//! the outcome under the payment's lock, checking the status again: whichever of a job, a
//! webhook or reconciliation gets there first applies an outcome, the others find it done.
//!
//! The `record_*` functions are the only writers of statuses, ledger entries and payment
//! events; each checks the transition and returns whether it applied.

use payments_contract::events::{FailureCode, PaymentCaptured, PaymentFailed, PaymentRefunded};
use platform::bus::{self, Metadata};
use platform::jobs::{self, Job, JobContext, JobError};
use sqlx::PgConnection;
use uuid::Uuid;

use super::PaymentsService;
use crate::domain::{EntryKind, PaymentStatus};
use crate::gateway::{Authorization, AuthorizeRequest, CaptureRequest, GatewayError, RefundRequest, VoidRequest};
use crate::jobs::{Authorize, Capture, Void};
use crate::store::payments::{self, Change, PaymentRow};
use crate::store::{ledger, refunds};

/// The idempotency key of an operation toward the gateway: one per payment and operation (or
/// per refund), whatever the job, attempt or process.
pub(crate) fn gateway_key(subject: Uuid, operation: &str) -> String {
    format!("{subject}:{operation}")
}

/// Metadata for what a job, webhook or reconciliation causes: the payment's correlation,
/// with `cause` as the cause.
pub(crate) fn follow_up(payment: &PaymentRow, cause: &str, actor: &str) -> Metadata {
    Metadata { causation_id: Some(cause.to_owned()), actor: Some(actor.to_owned()), ..payment.metadata.0.clone() }
}

fn job_actor(queue: &str) -> String {
    format!("system:{queue}")
}

fn unexpected(error: impl Into<anyhow::Error>) -> JobError {
    JobError::Retry(error.into())
}

async fn commit(tx: sqlx::Transaction<'static, sqlx::Postgres>) -> Result<(), JobError> {
    tx.commit().await.map_err(unexpected)
}

impl PaymentsService {
    async fn read(&self, id: Uuid) -> Result<PaymentRow, JobError> {
        let mut db = self.pool.acquire().await.map_err(unexpected)?;
        payments::find(&mut db, id)
            .await?
            .ok_or_else(|| JobError::Abort(anyhow::anyhow!("payment {id} does not exist")))
    }

    /// The payment, locked in a new transaction.
    async fn locked(&self, id: Uuid) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, PaymentRow), JobError> {
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        let payment = payments::lock(&mut tx, id)
            .await?
            .ok_or_else(|| JobError::Abort(anyhow::anyhow!("payment {id} does not exist")))?;
        Ok((tx, payment))
    }

    /// The `payments.authorize` job.
    #[tracing::instrument(skip_all, fields(payment_id = %id, attempt = ctx.attempt), err)]
    pub(crate) async fn authorize(&self, id: Uuid, ctx: &JobContext) -> Result<(), JobError> {
        let payment = self.read(id).await?;
        if payment.status()? != PaymentStatus::Pending || payment.gateway_reference.is_some() {
            // Settled, or the gateway is processing it (a webhook or reconciliation ends it).
            return Ok(());
        }
        let metadata = follow_up(&payment, &ctx.id, &job_actor(Authorize::QUEUE));
        if payment.cancel_requested {
            let (mut tx, payment) = self.locked(id).await?;
            self.record_voided(&mut tx, &payment, None).await?;
            return commit(tx).await;
        }
        let request = AuthorizeRequest {
            payment_id: id,
            amount: payment.money(payment.amount)?,
            payment_method: payment.payment_method.clone(),
            idempotency_key: gateway_key(id, "authorize"),
        };
        let answer = match self.gateway.authorize(&request).await {
            Err(error) if error.is_transient() => return Err(self.retry_later(error, "authorize")),
            answer => answer,
        };
        let (mut tx, payment) = self.locked(id).await?;
        match answer {
            Ok(Authorization::Approved { reference }) => {
                self.record_authorized(&mut tx, &payment, &reference).await?;
            }
            Ok(Authorization::Processing { reference }) => {
                tracing::info!(%reference, "the gateway is processing the authorization; a webhook or reconciliation settles it");
                self.record_processing(&mut tx, &payment, &reference).await?;
            }
            Err(GatewayError::Declined { code, message }) => {
                self.record_failed(&mut tx, &payment, code, &message, &metadata).await?;
            }
            Err(other) => {
                let message = other.to_string();
                self.record_failed(&mut tx, &payment, FailureCode::ProcessingError, &message, &metadata).await?;
            }
        }
        commit(tx).await
    }

    /// The `payments.capture` job.
    #[tracing::instrument(skip_all, fields(payment_id = %id, attempt = ctx.attempt), err)]
    pub(crate) async fn capture(&self, id: Uuid, ctx: &JobContext) -> Result<(), JobError> {
        let payment = self.read(id).await?;
        if payment.status()? != PaymentStatus::Authorized {
            return Ok(());
        }
        if payment.cancel_requested {
            return self.void(id, ctx).await;
        }
        let reference = payment
            .gateway_reference
            .clone()
            .ok_or_else(|| JobError::Abort(anyhow::anyhow!("authorized payment {id} has no gateway reference")))?;
        let request = CaptureRequest {
            payment_id: id,
            reference,
            amount: payment.money(payment.amount)?,
            idempotency_key: gateway_key(id, "capture"),
        };
        let metadata = follow_up(&payment, &ctx.id, &job_actor(Capture::QUEUE));
        match self.gateway.capture(&request).await {
            Ok(()) => {
                let (mut tx, payment) = self.locked(id).await?;
                self.record_captured(&mut tx, &payment, &metadata).await?;
                commit(tx).await
            }
            Err(GatewayError::Declined { code, message }) => {
                let (mut tx, payment) = self.locked(id).await?;
                self.record_failed(&mut tx, &payment, code, &message, &metadata).await?;
                commit(tx).await
            }
            // The gateway disagrees about the authorization: reconciliation finds out what it holds.
            Err(GatewayError::Refused(message)) => {
                Err(JobError::Abort(anyhow::anyhow!("the gateway refused the capture: {message}")))
            }
            Err(transient) => Err(self.retry_later(transient, "capture")),
        }
    }

    /// The `payments.void` job (and the capture job of a cancelled order).
    #[tracing::instrument(skip_all, fields(payment_id = %id, attempt = ctx.attempt), err)]
    pub(crate) async fn void(&self, id: Uuid, ctx: &JobContext) -> Result<(), JobError> {
        let payment = self.read(id).await?;
        if !payment.status()?.is_unsettled() {
            return Ok(());
        }
        let Some(reference) = payment.gateway_reference.clone() else {
            // The gateway never saw it: nothing to release there.
            let (mut tx, payment) = self.locked(id).await?;
            self.record_voided(&mut tx, &payment, None).await?;
            return commit(tx).await;
        };
        let request =
            VoidRequest { payment_id: id, reference: reference.clone(), idempotency_key: gateway_key(id, "void") };
        match self.gateway.void(&request).await {
            Ok(()) => {
                let (mut tx, payment) = self.locked(id).await?;
                self.record_voided(&mut tx, &payment, Some(&reference)).await?;
                commit(tx).await
            }
            Err(GatewayError::Declined { message, .. } | GatewayError::Refused(message)) => {
                Err(JobError::Abort(anyhow::anyhow!("the gateway refused the void: {message}")))
            }
            Err(transient) => Err(self.retry_later(transient, "void")),
        }
    }

    /// The `payments.refund` job.
    #[tracing::instrument(skip_all, fields(refund_id = %id, attempt = ctx.attempt), err)]
    pub(crate) async fn refund(&self, id: Uuid, ctx: &JobContext) -> Result<(), JobError> {
        let refund = {
            let mut db = self.pool.acquire().await.map_err(unexpected)?;
            refunds::find(&mut db, id)
                .await?
                .ok_or_else(|| JobError::Abort(anyhow::anyhow!("refund {id} does not exist")))?
        };
        if refund.status != "pending" {
            return Ok(());
        }
        let payment = self.read(refund.payment_id).await?;
        let reference = payment
            .gateway_reference
            .clone()
            .ok_or_else(|| JobError::Abort(anyhow::anyhow!("payment {} has no gateway reference", payment.id)))?;
        let request = RefundRequest {
            payment_id: payment.id,
            reference,
            amount: payment.money(refund.amount)?,
            idempotency_key: gateway_key(id, "refund"),
        };
        let metadata = Metadata {
            causation_id: Some(ctx.id.clone()),
            actor: Some(job_actor(crate::jobs::Refund::QUEUE)),
            ..refund.metadata.0.clone()
        };
        let outcome = match self.gateway.refund(&request).await {
            Ok(reference) => Ok(reference),
            Err(GatewayError::Declined { message, .. } | GatewayError::Refused(message)) => Err(message),
            Err(transient) => return Err(self.retry_later(transient, "refund")),
        };
        let (mut tx, payment) = self.locked(payment.id).await?;
        self.record_refund(
            &mut tx,
            &payment,
            id,
            outcome.as_ref().map(String::as_str).map_err(String::as_str),
            &metadata,
        )
        .await?;
        commit(tx).await
    }

    fn retry_later(&self, error: GatewayError, operation: &str) -> JobError {
        tracing::warn!(%error, operation, breaker = ?self.gateway.state(), "gateway call failed; retrying later");
        JobError::Retry(anyhow::Error::new(error).context(format!("{operation} at the gateway")))
    }

    /// Pending → authorized: the hold in the ledger, then the capture (or, for a cancelled
    /// order, the void) as a job.
    pub(crate) async fn record_authorized(
        &self,
        tx: &mut PgConnection,
        payment: &PaymentRow,
        reference: &str,
    ) -> anyhow::Result<bool> {
        let Ok(next) = payment.status()?.authorize() else {
            tracing::info!(status = %payment.status, "already past authorization; nothing to record");
            return Ok(false);
        };
        let now = self.now();
        let change = Change { gateway_reference: Some(reference), ..Change::default() };
        payments::update(tx, payment.id, next, &change, now).await?;
        let currency = payment.currency.as_str();
        ledger::record(tx, payment.id, EntryKind::Authorization, payment.amount, currency, None, reference, now)
            .await?;
        if payment.cancel_requested {
            jobs::enqueue(tx, &Void { payment_id: payment.id }, crate::jobs::schedule::<Void>(payment.id, None))
                .await?;
        } else {
            let job = Capture { payment_id: payment.id };
            jobs::enqueue(tx, &job, crate::jobs::schedule::<Capture>(payment.id, None)).await?;
        }
        tracing::info!(payment_id = %payment.id, "authorized");
        Ok(true)
    }

    /// The gateway answered "processing": its reference is kept, the payment stays pending.
    pub(crate) async fn record_processing(
        &self,
        tx: &mut PgConnection,
        payment: &PaymentRow,
        reference: &str,
    ) -> anyhow::Result<()> {
        if payment.status()? == PaymentStatus::Pending && payment.gateway_reference.is_none() {
            let change = Change { gateway_reference: Some(reference), ..Change::default() };
            payments::update(tx, payment.id, PaymentStatus::Pending, &change, self.now()).await?;
        }
        Ok(())
    }

    /// Authorized → captured: the capture in the ledger and `payments.payment_captured`.
    pub(crate) async fn record_captured(
        &self,
        tx: &mut PgConnection,
        payment: &PaymentRow,
        metadata: &Metadata,
    ) -> anyhow::Result<bool> {
        let Ok(next) = payment.status()?.capture() else {
            tracing::info!(status = %payment.status, "not authorized; no capture to record");
            return Ok(false);
        };
        let now = self.now();
        let reference = payment.gateway_reference.as_deref().unwrap_or_default();
        let change = Change { captured: Some(payment.amount), ..Change::default() };
        payments::update(tx, payment.id, next, &change, now).await?;
        ledger::record(tx, payment.id, EntryKind::Capture, payment.amount, &payment.currency, None, reference, now)
            .await?;
        let event = PaymentCaptured {
            payment_id: payment.id,
            order_id: payment.order_id,
            amount: payment.money(payment.amount)?,
            captured_at: now,
        };
        bus::append(tx, &event, metadata).await?;
        tracing::info!(payment_id = %payment.id, "captured");
        Ok(true)
    }

    /// Pending or authorized → failed, with `payments.payment_failed`. An authorization the
    /// capture of which was declined leaves no hold behind in the ledger.
    pub(crate) async fn record_failed(
        &self,
        tx: &mut PgConnection,
        payment: &PaymentRow,
        code: FailureCode,
        message: &str,
        metadata: &Metadata,
    ) -> anyhow::Result<bool> {
        let status = payment.status()?;
        let Ok(next) = status.fail() else {
            tracing::info!(status = %payment.status, "already settled; the failure changes nothing");
            return Ok(false);
        };
        let now = self.now();
        let change = Change { failure: Some((code.as_str(), message)), ..Change::default() };
        payments::update(tx, payment.id, next, &change, now).await?;
        if status == PaymentStatus::Authorized {
            let reference = payment.gateway_reference.as_deref().unwrap_or_default();
            ledger::record(tx, payment.id, EntryKind::Void, payment.amount, &payment.currency, None, reference, now)
                .await?;
        }
        let event = PaymentFailed {
            payment_id: payment.id,
            order_id: payment.order_id,
            code,
            message: Some(message.to_owned()),
            failed_at: now,
        };
        bus::append(tx, &event, metadata).await?;
        tracing::info!(payment_id = %payment.id, code = code.as_str(), "failed");
        Ok(true)
    }

    /// Pending or authorized → voided. A hold that was recorded is released in the ledger.
    /// No event: the order was cancelled already and no money moved.
    pub(crate) async fn record_voided(
        &self,
        tx: &mut PgConnection,
        payment: &PaymentRow,
        reference: Option<&str>,
    ) -> anyhow::Result<()> {
        let status = payment.status()?;
        let Ok(next) = status.void() else {
            tracing::info!(status = %payment.status, "already settled; nothing to void");
            return Ok(());
        };
        let now = self.now();
        payments::update(tx, payment.id, next, &Change::default(), now).await?;
        if status == PaymentStatus::Authorized {
            let reference = reference.or(payment.gateway_reference.as_deref()).unwrap_or_default();
            ledger::record(tx, payment.id, EntryKind::Void, payment.amount, &payment.currency, None, reference, now)
                .await?;
        }
        tracing::info!(payment_id = %payment.id, "voided");
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
                tracing::error!(%refund_id, message, "the gateway refused a refund; a person should look at it");
                return Ok(());
            }
        };
        let refunded = payment.refunded + refund.amount;
        let next = payment.status()?.refund(refunded, payment.captured)?;
        let change = Change { refunded: Some(refunded), ..Change::default() };
        payments::update(tx, payment.id, next, &change, now).await?;
        ledger::record(
            tx,
            payment.id,
            EntryKind::Refund,
            refund.amount,
            &payment.currency,
            Some(refund_id),
            reference,
            now,
        )
        .await?;
        let event = PaymentRefunded {
            payment_id: payment.id,
            order_id: payment.order_id,
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
