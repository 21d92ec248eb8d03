//! `jobs.retention`: apalis never deletes a job or a worker row, so the runtime purges
//! finished jobs past the retention window (freeing their idempotency keys), and the rows of
//! workers long gone that no remaining job points at.

use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::queue::JobQueue;
use super::runtime::JobsConfig;
use super::{Job, JobContext, JobError, JobHandler};

/// Rows per delete, so a large backlog never holds locks for long.
const BATCH: i64 = 10_000;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PurgeFinishedJobs {}

impl Job for PurgeFinishedJobs {
    const QUEUE: &'static str = "jobs.retention";
}

struct Purge {
    pool: PgPool,
    retention: Duration,
}

#[async_trait::async_trait]
impl JobHandler<PurgeFinishedJobs> for Purge {
    async fn run(&self, _: PurgeFinishedJobs, _: JobContext) -> Result<(), JobError> {
        let (jobs, workers) = purge(&self.pool, self.retention).await?;
        tracing::info!(jobs, workers, "finished jobs purged");
        Ok(())
    }
}

/// The runtime's own queue: the purge, once per `retention_every` across all processes.
pub(crate) fn queue(pool: PgPool, config: &JobsConfig) -> JobQueue {
    JobQueue::recurring(Purge { pool, retention: config.retention }, config.retention_every, PurgeFinishedJobs {})
        .concurrency(1)
}

/// Deletes jobs that finished (done, killed, or failed on their last attempt) more than
/// `retention` ago, then workers unseen for as long that no job points at.
///
/// # Errors
/// Database failures.
pub(crate) async fn purge(pool: &PgPool, retention: Duration) -> anyhow::Result<(u64, u64)> {
    let mut jobs = 0;
    loop {
        let deleted = sqlx::query(
            "DELETE FROM apalis.jobs WHERE id IN (
                SELECT id FROM apalis.jobs
                 WHERE (status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts))
                   AND done_at < now() - $1::interval
                 LIMIT $2)",
        )
        .bind(retention)
        .bind(BATCH)
        .execute(pool)
        .await
        .context("deleting finished jobs")?
        .rows_affected();
        jobs += deleted;
        if deleted < u64::try_from(BATCH).unwrap_or(u64::MAX) {
            break;
        }
    }
    let workers = sqlx::query(
        "DELETE FROM apalis.workers w
          WHERE last_seen < now() - $1::interval
            AND NOT EXISTS (SELECT 1 FROM apalis.jobs j WHERE j.lock_by = w.id)",
    )
    .bind(retention)
    .execute(pool)
    .await
    .context("deleting the rows of workers long gone")?
    .rows_affected();
    Ok((jobs, workers))
}
