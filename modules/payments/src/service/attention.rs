//! Payments a person must look at (ADR 0021). Where the code cannot settle money by itself
//! (reconciliation gave up, the gateway refused to release or give back money, or disagrees
//! with our records), the payment is flagged: a reason on the row, an error in the log, a
//! counter and a gauge to alert on, and a list admins read (`?needs_attention=true`) and
//! acknowledge once they have settled it with the processor.

use chrono::{DateTime, Utc};
use payments_contract::PaymentId;
use platform::metrics::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use sqlx::PgConnection;

use super::PaymentsService;
use crate::store::payments::{self, PaymentRow};

/// Why a payment needs a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attention {
    /// Still unsettled past `give_up_after`: ended as failed, whatever the gateway holds
    /// released.
    ReconciliationGaveUp,
    /// The gateway says something our records cannot follow (an authorization it does not
    /// know, an answer it forgot).
    GatewayDisagrees,
    /// The gateway refused to void or release a hold.
    ReleaseRefused,
    /// The gateway refused a refund.
    RefundRefused,
}

impl Attention {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::ReconciliationGaveUp => "reconciliation_gave_up",
            Self::GatewayDisagrees => "gateway_disagrees",
            Self::ReleaseRefused => "release_refused",
            Self::RefundRefused => "refund_refused",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// `bulkhead_payments_attention_total{reason}` (flags raised) and
/// `bulkhead_payments_needing_attention` (waiting now, refreshed by every reconciliation run):
/// alert on the gauge above 0.
#[derive(Debug, Clone, Default)]
pub(crate) struct AttentionMetrics {
    raised: Family<ReasonLabels, Counter>,
    waiting: Gauge,
}

impl AttentionMetrics {
    pub(crate) fn register(metrics: &Metrics) -> Self {
        let made = Self::default();
        metrics.register(
            "bulkhead_payments_attention",
            "Payments flagged for a person, by reason",
            made.raised.clone(),
        );
        metrics.register(
            "bulkhead_payments_needing_attention",
            "Payments flagged for a person and not yet acknowledged",
            made.waiting.clone(),
        );
        made
    }
}

impl PaymentsService {
    /// Flags `payment` for a person, in the caller's transaction.
    pub(crate) async fn flag(
        &self,
        tx: &mut PgConnection,
        payment: &PaymentRow,
        why: Attention,
        detail: &str,
    ) -> anyhow::Result<()> {
        let reason = format!("{}: {detail}", why.code());
        payments::flag_attention(tx, payment.id, &reason, self.now()).await?;
        self.attention.raised.get_or_create(&ReasonLabels { reason: why.code().to_owned() }).inc();
        tracing::error!(payment_id = %payment.id, order_id = %payment.order_id, reason, "a payment needs a person");
        Ok(())
    }

    /// Refreshes the gauge of payments waiting for a person.
    pub(crate) async fn count_needing_attention(&self, db: &mut PgConnection) -> anyhow::Result<()> {
        let waiting = payments::needing_attention(db).await?;
        self.attention.waiting.set(waiting);
        Ok(())
    }

    /// An admin settled the flagged payment with the processor: the flag clears, their note
    /// stays. Returns false when the payment had no flag.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) async fn acknowledge(
        &self,
        id: PaymentId,
        admin: &str,
        note: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let mut db = self.pool.acquire().await?;
        let cleared = payments::acknowledge(&mut db, id, admin, note, now).await?;
        if cleared {
            tracing::info!(payment_id = %id, admin, "a flagged payment was acknowledged");
            self.count_needing_attention(&mut db).await?;
        }
        Ok(cleared)
    }
}
