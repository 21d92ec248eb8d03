//! The safety net under delivery jobs: a job whose last attempt ended without recording an
//! outcome (a database error, a panic, a worker presumed dead too often) leaves its
//! notification `pending`, which neither retry nor redelivery accept. A recurring job marks
//! such rows `failed`, so they show up among the failures and an admin can retry them.

use super::NotificationsService;
use crate::domain::Channel;
use crate::store::notifications as store;

/// The reason a swept notification fails with.
pub(crate) const NO_OUTCOME: &str = "no outcome recorded (the delivery job ended)";

impl NotificationsService {
    /// Fails every notification still `pending` and untouched for longer than its channel's
    /// whole retry window ([`crate::RetryConfig::stale_after`]); returns how many.
    ///
    /// # Errors
    /// Database failures (the job is retried).
    #[tracing::instrument(skip_all, err)]
    pub(crate) async fn sweep_stale(&self) -> anyhow::Result<u64> {
        let now = self.now();
        let mut swept = 0;
        for (channel, retry) in
            [(Channel::Email, self.config.email.retry), (Channel::Webhook, self.config.webhooks.retry)]
        {
            let cutoff = now - chrono::Duration::from_std(retry.stale_after())?;
            let mut db = self.pool.acquire().await?;
            let failed = store::fail_stale(&mut db, channel, cutoff, NO_OUTCOME, now).await?;
            if failed > 0 {
                tracing::warn!(
                    channel = channel.as_str(),
                    failed,
                    "pending notifications without a delivery job failed"
                );
            }
            swept += failed;
        }
        Ok(swept)
    }
}
