//! Refunds an admin asks for: full (no amount) or partial, never more than is still
//! refundable (captured, less refunds pending or done).

use payments_contract::PaymentId;
use platform::bus::Metadata;

use super::PaymentsService;
use crate::domain::PaymentStatus;
use crate::store::payments;
use crate::store::refunds::{self, RefundRow};

/// What an admin asks.
#[derive(Debug, Clone)]
pub(crate) struct AdminRefund {
    pub(crate) payment_id: PaymentId,
    /// Minor units; `None` refunds everything still refundable.
    pub(crate) amount: Option<i64>,
    pub(crate) reason: String,
    pub(crate) admin: String,
    pub(crate) idempotency_key: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum RefundError {
    #[error("no such payment")]
    NotFound,
    #[error("a {0} payment has nothing captured to refund")]
    NotCaptured(PaymentStatus),
    #[error("{requested} asked, {refundable} refundable")]
    Exceeds { requested: i64, refundable: i64 },
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for RefundError {
    fn from(error: sqlx::Error) -> Self {
        Self::Unexpected(error.into())
    }
}

impl PaymentsService {
    /// Records the refund and enqueues it. The same admin and key again answer the same
    /// refund, even if the HTTP-level replay record is gone.
    ///
    /// # Errors
    /// See [`RefundError`].
    #[tracing::instrument(skip_all, fields(payment_id = %ask.payment_id), err)]
    pub(crate) async fn refund_by_admin(
        &self,
        ask: &AdminRefund,
        metadata: &Metadata,
    ) -> Result<RefundRow, RefundError> {
        let mut tx = self.pool.begin().await?;
        let Some(payment) = payments::lock(&mut tx, ask.payment_id).await? else {
            return Err(RefundError::NotFound);
        };
        let source = format!("admin:{}:{}", ask.admin, ask.idempotency_key);
        if let Some(existing) = refunds::by_source(&mut tx, &source).await? {
            return Ok(existing);
        }
        let status = payment.status;
        if !status.has_captured() && status != PaymentStatus::Refunded {
            return Err(RefundError::NotCaptured(status));
        }
        let refundable = payment.captured - refunds::committed(&mut tx, payment.id).await?;
        let requested = ask.amount.unwrap_or(refundable);
        if requested > refundable || refundable <= 0 {
            return Err(RefundError::Exceeds { requested, refundable });
        }
        let requested_by = format!("admin:{}", ask.admin);
        let id = self
            .create_refund(
                &mut tx,
                payment.id,
                requested,
                &payment.currency,
                &ask.reason,
                &source,
                &requested_by,
                metadata,
            )
            .await?;
        let refund =
            refunds::find(&mut tx, id).await?.ok_or_else(|| anyhow::anyhow!("the refund just made is gone"))?;
        tx.commit().await?;
        Ok(refund)
    }
}
