//! The sequencer gives committed outbox rows their `position`, one module at a time.
//!
//! Why readers never skip a row: a row is invisible until its transaction commits, so it
//! cannot be numbered before then, and a late commit simply gets a later number. Sequencing
//! transactions of one module run one at a time (an advisory lock), each numbering after the
//! last committed maximum, so positions appear to readers in order and without gaps.

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::listener::Wakeups;
use super::metrics::BusMetrics;

/// Channel on which a sequencing commit announces `<module>`, with the key hash and type of
/// each event it numbered when they fit (`<module>:<hash>/<type>,…`, see
/// [`super::listener::sequenced_notice`]).
pub const SEQUENCED_CHANNEL: &str = "bulkhead_sequenced";

/// Numbers up to `batch` committed, unnumbered rows of the pool's module; returns how many.
///
/// # Errors
/// Database failures (nothing is numbered then).
pub async fn sequence_batch(pool: &PgPool, batch: i64) -> anyhow::Result<u64> {
    let mut tx = pool.begin().await?;
    // Advisory locks are per database; the key names the module's schema.
    let schema: String = sqlx::query_scalar(
        "SELECT current_schema()
           FROM (SELECT pg_advisory_xact_lock(hashtextextended('bulkhead.sequencer.' || current_schema(), 0))) AS locked",
    )
    .fetch_one(&mut *tx)
    .await?;
    let mut numbered: Vec<(i32, String)> = sqlx::query_as(
        "WITH head AS (SELECT coalesce(max(position), 0) AS position FROM outbox),
              next AS (
                  SELECT id, row_number() OVER (ORDER BY append_seq) AS n
                    FROM outbox WHERE position IS NULL ORDER BY append_seq LIMIT $1
              )
         UPDATE outbox o SET position = head.position + next.n, sequenced_at = clock_timestamp()
           FROM next, head WHERE o.id = next.id
         RETURNING o.key_hash, o.event_type",
    )
    .bind(batch)
    .fetch_all(&mut *tx)
    .await
    .context("numbering outbox rows")?;
    let count = numbered.len() as u64;
    if count > 0 {
        // Only the partitions these keys fall in, of subscriptions handling these types, wake.
        numbered.sort_unstable();
        numbered.dedup();
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(SEQUENCED_CHANNEL)
            .bind(super::listener::sequenced_notice(&schema, &numbered))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(count)
}

/// How a sequencer paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// Rows per sequencing transaction.
    pub batch: i64,
    /// Longest wait for appends while notifications are lost.
    pub poll_interval: Duration,
    /// Longest wait while notifications arrive (every append notifies): a safety net only.
    pub listening_poll_interval: Duration,
    /// How long a sequencer woken by an append waits for more before numbering, so that one
    /// transaction numbers what several appends wrote (Kafka's `linger.ms`).
    pub linger: Duration,
}

/// Runs the sequencer of `module` until cancelled: woken by appends, polling as a fallback.
pub async fn run(
    module: &'static str,
    pool: PgPool,
    wakeups: Wakeups,
    metrics: BusMetrics,
    pacing: Pacing,
    cancel: CancellationToken,
) {
    let mut appended = wakeups.appended(module);
    loop {
        appended.borrow_and_update();
        match sequence_batch(&pool, pacing.batch).await {
            Ok(numbered) => {
                metrics.appended(module, numbered);
                if numbered as i64 == pacing.batch {
                    continue; // more may be waiting
                }
            }
            Err(error) => tracing::warn!(module, "sequencing failed, will retry: {error:#}"),
        }
        let poll = if wakeups.listening() { pacing.listening_poll_interval } else { pacing.poll_interval };
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = appended.changed() => {
                if !pacing.linger.is_zero() {
                    tokio::time::sleep(pacing.linger).await;
                }
            }
            () = tokio::time::sleep(poll) => {}
        }
    }
}
