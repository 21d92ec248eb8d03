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

/// Channel on which a sequencing commit announces `<module>`.
pub const SEQUENCED_CHANNEL: &str = "bulkhead_sequenced";

/// Numbers up to `batch` committed, unnumbered rows of the pool's module; returns how many.
///
/// # Errors
/// Database failures (nothing is numbered then).
pub async fn sequence_batch(pool: &PgPool, batch: i64) -> anyhow::Result<u64> {
    let mut tx = pool.begin().await?;
    // Advisory locks are per database; the key names the module's schema.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('bulkhead.sequencer.' || current_schema(), 0))")
        .execute(&mut *tx)
        .await?;
    let numbered = sqlx::query(
        "WITH head AS (SELECT coalesce(max(position), 0) AS position FROM outbox),
              next AS (
                  SELECT id, row_number() OVER (ORDER BY append_seq) AS n
                    FROM outbox WHERE position IS NULL ORDER BY append_seq LIMIT $1
              )
         UPDATE outbox o SET position = head.position + next.n, sequenced_at = clock_timestamp()
           FROM next, head WHERE o.id = next.id",
    )
    .bind(batch)
    .execute(&mut *tx)
    .await
    .context("numbering outbox rows")?
    .rows_affected();
    if numbered > 0 {
        sqlx::query("SELECT pg_notify($1, current_schema())").bind(SEQUENCED_CHANNEL).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(numbered)
}

/// Runs the sequencer of `module` until cancelled: woken by appends, polling as a fallback.
pub async fn run(
    module: &'static str,
    pool: PgPool,
    wakeups: Wakeups,
    metrics: BusMetrics,
    batch: i64,
    poll_interval: Duration,
    cancel: CancellationToken,
) {
    let mut appended = wakeups.appended(module);
    loop {
        appended.borrow_and_update();
        match sequence_batch(&pool, batch).await {
            Ok(numbered) => {
                metrics.appended(module, numbered);
                if numbered as i64 == batch {
                    continue; // more may be waiting
                }
            }
            Err(error) => tracing::warn!(module, "sequencing failed, will retry: {error:#}"),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = appended.changed() => {}
            () = tokio::time::sleep(poll_interval) => {}
        }
    }
}
