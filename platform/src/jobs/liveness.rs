//! One heartbeat transaction per process instead of one per worker (ADR 0027).
//!
//! apalis asks each worker's storage for a heartbeat every `heartbeat` interval, and
//! apalis-postgres answers each in a transaction of its own: about 1.7 a second for the
//! monolith's queues, the largest share of what an idle process cost PostgreSQL. Here a
//! worker's heartbeat only notes, in memory, that its task is still being polled. Once per
//! interval, one transaction renews every worker noted since the last round and re-enqueues
//! the jobs of dead workers of this process's queues, as apalis' heartbeat did per queue.
//!
//! A worker whose task stops being polled is not renewed, so it is presumed dead after
//! the same missed heartbeats as before.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::types::PgInterval;
use tokio_util::sync::CancellationToken;

use super::signals::JobSignals;

/// The workers of one process that have beaten since the last round, by name, with their
/// queue.
#[derive(Debug, Clone, Default)]
pub(crate) struct WorkerLiveness {
    beaten: Arc<Mutex<BTreeMap<String, &'static str>>>,
}

impl WorkerLiveness {
    /// Notes that `worker` (of `queue`) is alive; the next round renews it.
    pub(crate) fn beat(&self, queue: &'static str, worker: &str) {
        if let Ok(mut beaten) = self.beaten.lock() {
            beaten.insert(worker.to_owned(), queue);
        }
    }

    fn take(&self) -> BTreeMap<String, &'static str> {
        self.beaten.lock().map(|mut beaten| std::mem::take(&mut *beaten)).unwrap_or_default()
    }

    /// Renews, every `every`, the workers that beat since the last round, and re-enqueues
    /// the jobs of workers of `queues` not seen for `dead_for`. Stops on `cancel`.
    pub(crate) async fn run(
        self,
        pool: PgPool,
        queues: Vec<&'static str>,
        signals: JobSignals,
        every: Duration,
        dead_for: Duration,
        cancel: CancellationToken,
    ) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let beaten = self.take();
            match renew(&pool, &beaten, &queues, dead_for).await {
                Ok(orphaned) => {
                    for queue in orphaned {
                        tracing::debug!(queue, "jobs of a dead worker re-enqueued");
                        // No insert, so no notification: news for this process's worker.
                        signals.wake(queue);
                    }
                }
                // Put them back: the next round renews them, well within the missed beats.
                Err(error) => {
                    tracing::warn!("job workers' heartbeat failed; retrying next round: {error}");
                    for (worker, queue) in beaten {
                        self.beat(queue, &worker);
                    }
                }
            }
        }
    }
}

/// One round in one transaction: the renewal, then apalis' `reenqueue_orphaned` for all of
/// `queues` at once. Returns the queues that got jobs back.
async fn renew(
    pool: &PgPool,
    beaten: &BTreeMap<String, &'static str>,
    queues: &[&'static str],
    dead_for: Duration,
) -> Result<BTreeSet<&'static str>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    if !beaten.is_empty() {
        let (workers, worker_queues): (Vec<&str>, Vec<&str>) =
            beaten.iter().map(|(worker, queue)| (worker.as_str(), *queue)).unzip();
        sqlx::query(
            "UPDATE apalis.workers w SET last_seen = now() \
             FROM unnest($1::text[], $2::text[]) AS beat(id, queue) \
             WHERE w.id = beat.id AND w.worker_type = beat.queue",
        )
        .bind(&workers)
        .bind(&worker_queues)
        .execute(&mut *tx)
        .await?;
    }
    let dead_for =
        PgInterval { months: 0, days: 0, microseconds: i64::try_from(dead_for.as_micros()).unwrap_or(i64::MAX) };
    // apalis-postgres' `reenqueue_orphaned.sql`, for several queues, telling which.
    let orphaned: Vec<String> = sqlx::query_scalar(
        "WITH stale AS ( \
             SELECT jobs.id FROM apalis.jobs \
             JOIN apalis.workers ON jobs.lock_by = workers.id \
             WHERE (jobs.status = 'Running' OR jobs.status = 'Queued') \
               AND now() - workers.last_seen >= $1 AND workers.worker_type = ANY($2) \
             FOR UPDATE OF jobs SKIP LOCKED) \
         UPDATE apalis.jobs SET status = 'Pending', done_at = NULL, lock_by = NULL, lock_at = NULL, \
             attempts = attempts + 1, \
             last_result = '{\"Err\": \"Re-enqueued due to worker heartbeat timeout.\"}' \
         FROM stale WHERE apalis.jobs.id = stale.id \
         RETURNING apalis.jobs.job_type",
    )
    .bind(dead_for)
    .bind(queues)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(queues.iter().copied().filter(|queue| orphaned.iter().any(|job_type| job_type == queue)).collect())
}
