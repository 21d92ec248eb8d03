//! The work payments' use cases enqueue, one job a gateway operation (and the recurring
//! reconciliation), and how it is scheduled. `jobs.rs` runs them.

use payments_contract::PaymentId;
use platform::jobs::{Job, Schedule};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::PaymentsService;

/// Authorize a pending payment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Authorize {
    pub(crate) payment_id: PaymentId,
}

impl Job for Authorize {
    const QUEUE: &'static str = "payments.authorize";
}

/// Capture an authorized payment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Capture {
    pub(crate) payment_id: PaymentId,
}

impl Job for Capture {
    const QUEUE: &'static str = "payments.capture";
}

/// Release a payment whose order was cancelled before the capture.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Void {
    pub(crate) payment_id: PaymentId,
}

impl Job for Void {
    const QUEUE: &'static str = "payments.void";
}

/// Release an authorization the gateway holds for a payment that is already over.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Release {
    pub(crate) payment_id: PaymentId,
    /// The gateway's reference of the authorization.
    pub(crate) reference: String,
}

impl Job for Release {
    const QUEUE: &'static str = "payments.release";
}

/// Carry out a refund.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Refund {
    pub(crate) refund_id: Uuid,
}

impl Job for Refund {
    const QUEUE: &'static str = "payments.refund";
}

/// Re-query payments stuck in pending or authorized, and settle them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Reconcile {}

impl Job for Reconcile {
    const QUEUE: &'static str = "payments.reconcile";
}

impl PaymentsService {
    /// How a gateway job for `subject` (a payment or a refund) is scheduled: now, keyed so that asking twice enqueues
    /// once, with the configured attempts. `round` tells apart later rounds asked by
    /// reconciliation.
    pub(crate) fn schedule<J: Job>(&self, subject: impl std::fmt::Display, round: Option<&str>) -> Schedule {
        let key = match round {
            None => format!("{}:{subject}", J::QUEUE),
            Some(round) => format!("{}:{subject}:{round}", J::QUEUE),
        };
        Schedule::now().idempotency_key(key).max_attempts(self.config.job_attempts)
    }
}
