//! The inventory module's background work: a reservation's expiry, enqueued with the
//! reservation to run when its time-to-live is up.

use std::sync::Arc;

use platform::bus::Metadata;
use platform::jobs::{Job, JobContext, JobError, JobHandler};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::service::InventoryService;
use crate::service::reservations::Expiry;

/// The expiry of one order's reservation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReservationExpiry {
    pub(crate) order_id: Uuid,
    pub(crate) reservation_id: Uuid,
    /// The metadata of what reserved, so the expiry continues its correlation.
    pub(crate) metadata: Metadata,
}

impl ReservationExpiry {
    pub(crate) const QUEUE_NAME: &'static str = "inventory.reservation_expiry";
}

impl Job for ReservationExpiry {
    const QUEUE: &'static str = Self::QUEUE_NAME;
}

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
