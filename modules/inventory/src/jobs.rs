//! The inventory module's background work: a reservation's expiry, enqueued with the
//! reservation to run when its time-to-live is up. The job's payload belongs to the use case
//! that enqueues it (`service::reservations`); this file only runs it, so the dependency goes
//! one way: jobs → service.

use std::sync::Arc;

use platform::jobs::{JobContext, JobError, JobHandler};

use crate::domain::Expiry;
use crate::service::{InventoryService, ReservationExpiry};

/// Runs [`ReservationExpiry`] jobs.
#[derive(Debug, Clone)]
pub(crate) struct ReservationExpiryHandler(pub(crate) Arc<InventoryService>);

#[async_trait::async_trait]
impl JobHandler<ReservationExpiry> for ReservationExpiryHandler {
    async fn run(&self, job: ReservationExpiry, ctx: JobContext) -> Result<(), JobError> {
        let service = &self.0;
        let metadata = ctx.follow_up(&job.metadata, ReservationExpiry::QUEUE_NAME);
        let mut tx = service.pool.begin().await.map_err(anyhow::Error::from)?;
        match service.expire(&mut tx, job.order_id, &metadata).await? {
            Expiry::NotDue => {
                Err(JobError::Retry(anyhow::anyhow!("reservation {} is not due yet", job.reservation_id)))
            }
            Expiry::Expired | Expiry::Settled => {
                tx.commit().await.map_err(anyhow::Error::from)?;
                Ok(())
            }
        }
    }
}
