//! What the order saga asks of payments, handled inside the bus's transaction: a payment for
//! an order, the voiding of a cancelled order's payment, a refund. Nothing here calls the
//! gateway; each enqueues the job that will.

use orders_contract::OrderId;
use orders_contract::events::{PaymentRequested, RefundReason, RefundRequested};
use payments_contract::PaymentId;
use platform::bus::Metadata;
use platform::jobs;
use sqlx::PgConnection;
use uuid::Uuid;

use super::PaymentsService;
use super::{Authorize, Refund, Void};
use crate::domain::PaymentStatus;
use crate::store::payments::{self, Change, NewPayment};
use crate::store::refunds::{self, NewRefund};

impl PaymentsService {
    /// Creates the order's payment and enqueues its authorization; a request delivered again
    /// finds the payment and does nothing.
    ///
    /// # Errors
    /// Database failures.
    #[tracing::instrument(skip_all, fields(order_id = %request.order_id), err)]
    pub(crate) async fn request_payment(
        &self,
        tx: &mut PgConnection,
        request: &PaymentRequested,
        metadata: &Metadata,
    ) -> anyhow::Result<()> {
        let payment = NewPayment {
            id: PaymentId::new(),
            order_id: request.order_id,
            user_id: request.user_id,
            amount: request.amount,
            payment_method: &request.payment_method,
            pay_by: request.pay_by,
            metadata,
        };
        if !payments::insert(tx, &payment, self.now()).await? {
            tracing::info!("the order already has its payment; nothing to do");
            return Ok(());
        }
        jobs::enqueue(tx, &Authorize { payment_id: payment.id }, self.schedule::<Authorize>(payment.id, None)).await?;
        tracing::info!(payment_id = %payment.id, "payment created; authorization enqueued");
        Ok(())
    }

    /// The order was cancelled: a payment not captured yet is voided, never captured (a
    /// capture already under way is refunded when orders asks). Captured money goes back only
    /// when orders asks for a refund.
    ///
    /// # Errors
    /// Database failures.
    #[tracing::instrument(skip_all, fields(order_id = %order_id), err)]
    pub(crate) async fn order_cancelled(&self, tx: &mut PgConnection, order_id: OrderId) -> anyhow::Result<()> {
        let Some(payment) = payments::lock_for_order(tx, order_id).await? else {
            tracing::info!("the order has no payment; nothing to void");
            return Ok(());
        };
        let status = payment.status;
        if !status.is_unsettled() || payment.cancel_requested {
            return Ok(());
        }
        let change = Change { cancel_requested: true, ..Change::default() };
        payments::update(tx, payment.id, status, &change, self.now()).await?;
        // A pending payment's authorization job sees the flag; one the gateway holds or is
        // processing is voided now.
        if status == PaymentStatus::Authorized || payment.gateway_reference.is_some() {
            jobs::enqueue(tx, &Void { payment_id: payment.id }, self.schedule::<Void>(payment.id, None)).await?;
        }
        tracing::info!(payment_id = %payment.id, "void requested");
        Ok(())
    }

    /// Orders asks for money back. At most what is still refundable goes back (an admin may
    /// have refunded part already); the same event delivered again creates one refund.
    ///
    /// # Errors
    /// An unknown payment (a person must look: the event is dead-lettered), or database
    /// failures.
    #[tracing::instrument(skip_all, fields(payment_id = %request.payment_id, reason = ?request.reason), err)]
    pub(crate) async fn refund_for_order(
        &self,
        tx: &mut PgConnection,
        request: &RefundRequested,
        event_id: Uuid,
        metadata: &Metadata,
    ) -> anyhow::Result<()> {
        let source = format!("order-event:{event_id}");
        if refunds::by_source(tx, &source).await?.is_some() {
            return Ok(());
        }
        let Some(payment) = payments::lock(tx, request.payment_id).await? else {
            anyhow::bail!("orders asked to refund payment {}, which payments does not know", request.payment_id);
        };
        if !payment.status.has_captured() {
            tracing::warn!(status = %payment.status, "nothing captured to refund");
            return Ok(());
        }
        if request.amount.currency.as_str() != payment.currency {
            anyhow::bail!(
                "orders asked for a refund in {} of a payment in {}",
                request.amount.currency.as_str(),
                payment.currency
            );
        }
        let refundable = payment.captured - refunds::committed(tx, payment.id).await?;
        let amount = request.amount.amount.min(refundable);
        if amount <= 0 {
            tracing::warn!(asked = request.amount.amount, "everything captured is refunded already");
            return Ok(());
        }
        if amount < request.amount.amount {
            tracing::warn!(asked = request.amount.amount, amount, "refunding what is left");
        }
        let reason = match request.reason {
            RefundReason::OrderCancelled => "order_cancelled",
            RefundReason::LateCapture => "late_capture",
            RefundReason::DuplicateCapture => "duplicate_capture",
            RefundReason::AmountMismatch => "amount_mismatch",
        };
        self.create_refund(tx, payment.id, amount, &payment.currency, reason, &source, "orders", metadata).await?;
        Ok(())
    }

    /// Records a pending refund and enqueues the job that carries it out.
    #[expect(clippy::too_many_arguments, reason = "one column each")]
    pub(crate) async fn create_refund(
        &self,
        tx: &mut PgConnection,
        payment_id: PaymentId,
        amount: i64,
        currency: &str,
        reason: &str,
        source: &str,
        requested_by: &str,
        metadata: &Metadata,
    ) -> anyhow::Result<Uuid> {
        let id = Uuid::now_v7();
        let refund = NewRefund { id, payment_id, amount, currency, reason, source, requested_by, metadata };
        refunds::insert(tx, &refund, self.now()).await?;
        jobs::enqueue(tx, &Refund { refund_id: id }, self.schedule::<Refund>(id, None)).await?;
        tracing::info!(refund_id = %id, amount, "refund enqueued");
        Ok(id)
    }
}
