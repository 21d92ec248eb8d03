//! Where a refund stands: asked (`pending`), then done by the gateway (`succeeded`) or refused
//! (`failed`). Only a pending refund is carried out, and only refunds that did not fail count
//! against what may still be refunded.

use serde::Serialize;

/// A refund's status, as its column holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub(crate) enum RefundStatus {
    Pending,
    Succeeded,
    Failed,
}

impl RefundStatus {
    /// Whether the gateway still has to be asked.
    pub(crate) fn is_pending(self) -> bool {
        self == Self::Pending
    }

    /// Whether the refund takes (or took) money back, so counts against what is refundable.
    pub(crate) fn commits_money(self) -> bool {
        self != Self::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pending_refunds_are_carried_out_and_failed_ones_free_their_amount() {
        assert!(RefundStatus::Pending.is_pending());
        assert!(!RefundStatus::Succeeded.is_pending() && !RefundStatus::Failed.is_pending());
        assert!(RefundStatus::Pending.commits_money() && RefundStatus::Succeeded.commits_money());
        assert!(!RefundStatus::Failed.commits_money());
    }
}
