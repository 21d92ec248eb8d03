//! Reading payments for the API: one payment with its ledger and refunds from one snapshot,
//! and pages of payments. Handlers reach payments only through here and the other use cases.

use anyhow::Context;
use payments_contract::PaymentId;
use platform::http::{Page, PageRequest};

use super::PaymentsService;
use crate::domain::Balances;
use crate::store::ledger::{self, Entry};
use crate::store::payments::{self, ListFilter, ListKey, PaymentRow};
use crate::store::refunds::{self, RefundRow};

/// A payment with what its ledger and refunds say about it.
#[derive(Debug, Clone)]
pub(crate) struct PaymentDetail {
    pub(crate) payment: PaymentRow,
    pub(crate) ledger: Vec<Entry>,
    /// Sums over the ledger.
    pub(crate) balances: Balances,
    pub(crate) refunds: Vec<RefundRow>,
    /// What an admin may still refund: captured, less refunds pending or done.
    pub(crate) refundable: i64,
}

impl PaymentsService {
    /// One payment, its ledger and refunds, read from one snapshot so they agree.
    ///
    /// # Errors
    /// Database failures, or a ledger that does not add up.
    pub(crate) async fn payment(&self, id: PaymentId) -> anyhow::Result<Option<PaymentDetail>> {
        let mut db = self.pool.begin().await.context("starting to read a payment")?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *db)
            .await
            .context("taking a snapshot to read a payment")?;
        let Some(payment) = payments::find(&mut db, id).await? else { return Ok(None) };
        let ledger = ledger::entries(&mut db, id).await?;
        let balances = ledger::balances(&ledger)?;
        let refunds = refunds::of_payment(&mut db, id).await?;
        let committed: i64 = refunds.iter().filter(|r| r.status.commits_money()).map(|r| r.amount).sum();
        let refundable = (balances.captured - committed).max(0);
        Ok(Some(PaymentDetail { payment, ledger, balances, refunds, refundable }))
    }

    /// One page of the payments `filter` covers, newest first by default.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) async fn list_payments(
        &self,
        filter: &ListFilter,
        page: &PageRequest<ListKey>,
    ) -> anyhow::Result<Page<PaymentRow>> {
        let mut db = self.pool.acquire().await.context("listing payments")?;
        let rows = payments::list(&mut db, filter, page).await?;
        Ok(Page::from_overfetch(rows, page, |row| ListKey(row.created_at, row.id)))
    }
}
