//! The payments use cases: taking the order's payment request, moving a payment along as the
//! gateway answers (jobs, webhooks, reconciliation), refunds, and the ledger behind them.

pub(crate) mod attention;
pub(crate) mod processing;
mod queued;
mod reads;
pub(crate) mod reconcile;
pub(crate) mod record;
pub(crate) mod refunds;
pub(crate) mod requests;
pub(crate) mod webhooks;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use platform::clock::Clock;
use sqlx::PgPool;

/// The read models handlers render (rows as the store reads them).
pub(crate) use crate::store::ledger::Entry;
pub(crate) use crate::store::payments::{ListFilter, ListKey, PaymentRow};
pub(crate) use crate::store::refunds::RefundRow;
pub(crate) use queued::{Authorize, Capture, Reconcile, Refund, Release, Void};
pub(crate) use reads::PaymentDetail;

use crate::PaymentsConfig;
use crate::gateway::Guarded;

/// What every use case shares.
#[derive(Debug)]
pub(crate) struct PaymentsService {
    pub(crate) pool: PgPool,
    pub(crate) gateway: Guarded,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: PaymentsConfig,
    pub(crate) attention: attention::AttentionMetrics,
}

impl PaymentsService {
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}
