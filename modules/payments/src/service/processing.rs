//! Moving a payment along with the gateway, in jobs: authorize, capture, void, release and
//! refund. A job reads the payment, calls the gateway (no transaction open during the call),
//! then records the outcome under the payment's lock through `record` (which checks the status
//! again): whichever of a job, a webhook or reconciliation gets there first applies an outcome,
//! the others find it done.

use payments_contract::PaymentId;
use payments_contract::events::FailureCode;
use platform::jobs::{Job, JobContext, JobError};
use sqlx::PgConnection;
use uuid::Uuid;

use super::PaymentsService;
use super::attention::Attention;
use super::{Authorize, Capture, Refund, Release, Void};
use crate::domain::{EntryKind, PaymentStatus};
use crate::gateway::{
    Authorization, AuthorizeRequest, CaptureRequest, GatewayError, GatewayPayment, RefundRequest, VoidRequest,
};
use crate::store::payments::{self, PaymentRow};
use crate::store::{ledger, refunds};

/// The idempotency key of an operation toward the gateway: one per payment and operation (or
/// per refund), whatever the job, attempt or process.
pub(crate) fn gateway_key(subject: impl std::fmt::Display, operation: &str) -> String {
    format!("{subject}:{operation}")
}

fn unexpected(error: impl Into<anyhow::Error>) -> JobError {
    JobError::Retry(error.into())
}

async fn commit(tx: sqlx::Transaction<'static, sqlx::Postgres>) -> Result<(), JobError> {
    tx.commit().await.map_err(unexpected)
}

impl PaymentsService {
    async fn read(&self, id: PaymentId) -> Result<PaymentRow, JobError> {
        let mut db = self.pool.acquire().await.map_err(unexpected)?;
        payments::find(&mut db, id)
            .await?
            .ok_or_else(|| JobError::Abort(anyhow::anyhow!("payment {id} does not exist")))
    }

    /// The payment, locked in a new transaction.
    async fn locked(
        &self,
        id: PaymentId,
    ) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, PaymentRow), JobError> {
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        let payment = payments::lock(&mut tx, id)
            .await?
            .ok_or_else(|| JobError::Abort(anyhow::anyhow!("payment {id} does not exist")))?;
        Ok((tx, payment))
    }

    fn retry_later(&self, error: GatewayError, operation: &str) -> JobError {
        tracing::warn!(%error, operation, breaker = ?self.gateway.state(), "gateway call failed; retrying later");
        JobError::Retry(anyhow::Error::new(error).context(format!("{operation} at the gateway")))
    }

    /// The `payments.authorize` job.
    #[tracing::instrument(skip_all, fields(payment_id = %id, attempt = ctx.attempt), err)]
    pub(crate) async fn authorize(&self, id: PaymentId, ctx: &JobContext) -> Result<(), JobError> {
        let payment = self.read(id).await?;
        if payment.status != PaymentStatus::Pending || payment.gateway_reference.is_some() {
            // Settled, or the gateway is processing it (a webhook or reconciliation ends it).
            return Ok(());
        }
        if payment.cancel_requested {
            // An earlier attempt may have reached the gateway: the void finds out.
            return self.void(id, ctx).await;
        }
        let metadata = ctx.follow_up(&payment.metadata.0, Authorize::QUEUE);
        let request = AuthorizeRequest {
            payment_id: id.into_inner(),
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
    pub(crate) async fn capture(&self, id: PaymentId, ctx: &JobContext) -> Result<(), JobError> {
        let payment = self.read(id).await?;
        if payment.status != PaymentStatus::Authorized {
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
            payment_id: id.into_inner(),
            reference,
            amount: payment.money(payment.amount)?,
            idempotency_key: gateway_key(id, "capture"),
        };
        let metadata = ctx.follow_up(&payment.metadata.0, Capture::QUEUE);
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
            // A void won the race (the order was cancelled meanwhile), or the gateway disagrees
            // about the authorization: what it holds decides, as after a refused void.
            Err(GatewayError::Refused(message)) => self.after_refused_capture(id, &message, &metadata).await,
            Err(transient) => Err(self.retry_later(transient, "capture")),
        }
    }

    /// The `payments.void` job (and the authorize or capture job of a cancelled order):
    /// releases whatever the gateway holds for the payment. Without a reference it asks the
    /// gateway first, since an earlier attempt may have been carried out with its answer lost.
    #[tracing::instrument(skip_all, fields(payment_id = %id, attempt = ctx.attempt), err)]
    pub(crate) async fn void(&self, id: PaymentId, ctx: &JobContext) -> Result<(), JobError> {
        let payment = self.read(id).await?;
        if !payment.status.is_unsettled() {
            return Ok(());
        }
        let metadata = ctx.follow_up(&payment.metadata.0, Void::QUEUE);
        let reference = match payment.gateway_reference.clone() {
            Some(reference) => reference,
            None => match self.gateway.lookup(id.into_inner()).await {
                Ok(GatewayPayment::Authorized { reference } | GatewayPayment::Processing { reference }) => reference,
                Ok(seen) => {
                    let (mut tx, payment) = self.locked(id).await?;
                    self.adopt(&mut tx, &payment, &seen, &metadata).await?;
                    return commit(tx).await;
                }
                Err(error) if error.is_transient() => return Err(self.retry_later(error, "lookup")),
                Err(error) => return Err(JobError::Abort(error.into())),
            },
        };
        let request = VoidRequest {
            payment_id: id.into_inner(),
            reference: reference.clone(),
            idempotency_key: gateway_key(id, "void"),
        };
        match self.gateway.void(&request).await {
            Ok(()) => {
                let (mut tx, payment) = self.locked(id).await?;
                self.record_voided(&mut tx, &payment, Some(&reference)).await?;
                commit(tx).await
            }
            Err(GatewayError::Declined { message, .. } | GatewayError::Refused(message)) => {
                self.after_refused_release(id, &message, &metadata, "void").await
            }
            Err(transient) => Err(self.retry_later(transient, "void")),
        }
    }

    /// The gateway refused to void or release: what it holds decides. Nothing (it never knew
    /// the authorization, or released it already): nothing to void, and the payment ends
    /// voided. Declined or captured: the payment takes that outcome. Still held: a person must
    /// look (the job ends; the flag stays until acknowledged).
    async fn after_refused_release(
        &self,
        id: PaymentId,
        refusal: &str,
        metadata: &platform::bus::Metadata,
        operation: &str,
    ) -> Result<(), JobError> {
        let (seen, mut tx, payment) = self.ask_gateway_then_lock(id).await?;
        match &seen {
            GatewayPayment::Unknown | GatewayPayment::Voided { .. } => {
                tracing::info!(%refusal, gateway = ?seen, "nothing held at the gateway: nothing to {operation}");
                if payment.status.is_unsettled() {
                    let reference = match &seen {
                        GatewayPayment::Voided { reference } => Some(reference.as_str()),
                        _ => None,
                    };
                    self.record_voided(&mut tx, &payment, reference).await?;
                } else {
                    self.release_ledger_hold(&mut tx, &payment).await?;
                }
            }
            GatewayPayment::Declined { .. } if !payment.status.is_unsettled() => {
                self.release_ledger_hold(&mut tx, &payment).await?;
            }
            GatewayPayment::Declined { .. } | GatewayPayment::Captured { .. } if payment.status.is_unsettled() => {
                self.adopt(&mut tx, &payment, &seen, metadata).await?;
            }
            _ => {
                let detail = format!("the gateway refused to {operation} ({refusal}) and reports {seen:?}");
                self.flag(&mut tx, &payment, Attention::ReleaseRefused, &detail).await?;
            }
        }
        commit(tx).await
    }

    /// What the gateway holds for payment `id`, then the payment under its row lock (asked
    /// first, so no lock is held during the call).
    async fn ask_gateway_then_lock(
        &self,
        id: PaymentId,
    ) -> Result<(GatewayPayment, sqlx::Transaction<'static, sqlx::Postgres>, PaymentRow), JobError> {
        let seen = match self.gateway.lookup(id.into_inner()).await {
            Ok(seen) => seen,
            Err(error) if error.is_transient() => return Err(self.retry_later(error, "lookup")),
            Err(error) => return Err(JobError::Abort(error.into())),
        };
        let (tx, payment) = self.locked(id).await?;
        Ok((seen, tx, payment))
    }

    /// The gateway refused to capture: a payment it voided, declined or captured already takes
    /// that outcome (no failed job); one it does not know, or still holds but will not
    /// capture, is flagged for a person and left to reconciliation.
    async fn after_refused_capture(
        &self,
        id: PaymentId,
        refusal: &str,
        metadata: &platform::bus::Metadata,
    ) -> Result<(), JobError> {
        let (seen, mut tx, payment) = self.ask_gateway_then_lock(id).await?;
        match &seen {
            GatewayPayment::Voided { .. } | GatewayPayment::Declined { .. } | GatewayPayment::Captured { .. } => {
                tracing::info!(%refusal, gateway = ?seen, "the capture was refused; taking the gateway's word");
                self.adopt(&mut tx, &payment, &seen, metadata).await?;
            }
            _ if payment.attention.is_none() => {
                let detail = format!("the gateway refused the capture ({refusal}) and reports {seen:?}");
                self.flag(&mut tx, &payment, Attention::GatewayDisagrees, &detail).await?;
            }
            _ => {}
        }
        commit(tx).await
    }

    /// Records the void of whatever the ledger still holds for a payment that is over.
    async fn release_ledger_hold(&self, tx: &mut PgConnection, payment: &PaymentRow) -> anyhow::Result<()> {
        let entries = ledger::entries(tx, payment.id).await?;
        let held = ledger::balances(&entries)?.held;
        if held > 0 {
            let reference = payment.gateway_reference.as_deref().unwrap_or("none");
            ledger::record(tx, payment.id, EntryKind::Void, held, &payment.currency, None, reference, self.now())
                .await?;
        }
        Ok(())
    }

    /// The `payments.release` job: the gateway holds an authorization of a payment that is
    /// already over (failed, or voided before the authorization was known). Releasing it puts
    /// the ledger's hold, if one was recorded, to rest.
    #[tracing::instrument(skip_all, fields(payment_id = %id, attempt = ctx.attempt), err)]
    pub(crate) async fn release(&self, id: PaymentId, reference: &str, ctx: &JobContext) -> Result<(), JobError> {
        let request = VoidRequest {
            payment_id: id.into_inner(),
            reference: reference.to_owned(),
            idempotency_key: gateway_key(id, "void"),
        };
        match self.gateway.void(&request).await {
            Ok(()) => {
                let (mut tx, payment) = self.locked(id).await?;
                self.release_ledger_hold(&mut tx, &payment).await?;
                tracing::info!(job_id = %ctx.id, "released an authorization the gateway still held");
                commit(tx).await
            }
            Err(GatewayError::Declined { message, .. } | GatewayError::Refused(message)) => {
                let payment = self.read(id).await?;
                let metadata = ctx.follow_up(&payment.metadata.0, Release::QUEUE);
                self.after_refused_release(id, &message, &metadata, "release").await
            }
            Err(transient) => Err(self.retry_later(transient, "release")),
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
        if !refund.status.is_pending() {
            return Ok(());
        }
        let payment = self.read(refund.payment_id).await?;
        let reference = payment
            .gateway_reference
            .clone()
            .ok_or_else(|| JobError::Abort(anyhow::anyhow!("payment {} has no gateway reference", payment.id)))?;
        let request = RefundRequest {
            payment_id: payment.id.into_inner(),
            reference,
            amount: payment.money(refund.amount)?,
            idempotency_key: gateway_key(id, "refund"),
        };
        let metadata = ctx.follow_up(&refund.metadata.0, Refund::QUEUE);
        let outcome = match self.gateway.refund(&request).await {
            Ok(reference) => Ok(reference),
            Err(GatewayError::Declined { message, .. } | GatewayError::Refused(message)) => Err(message),
            Err(transient) => return Err(self.retry_later(transient, "refund")),
        };
        let (mut tx, payment) = self.locked(payment.id).await?;
        let outcome = outcome.as_ref().map(String::as_str).map_err(String::as_str);
        self.record_refund(&mut tx, &payment, id, outcome, &metadata).await?;
        commit(tx).await
    }
}
