//! Consuming one subscription. Every process hosting it is a member of its consumer group
//! (a heartbeat row); partitions are dealt round-robin over the live members, a stopped
//! member leaves at once and a crashed one expires after the session timeout. Per owned
//! partition: claim the cursor row (`FOR UPDATE SKIP LOCKED`, so even during a rebalance no
//! two processes handle the same partition at once), read a batch,
//! run each event's handler under a savepoint, and commit the handlers' effects together with
//! the cursor advance. A failure keeps the partition at the failing event (order is kept)
//! until a retry succeeds or the event is dead-lettered.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::event::EventEnvelope;
use super::metrics::BusMetrics;
use super::subscription::{ErasedHandler, HandlerContext, StartFrom, Subscription};
use super::transport::{EventLog, Partition};

/// How a batch went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// At least one event was handled, skipped or dead-lettered: there may be more.
    Moved,
    /// Nothing new.
    Idle,
    /// Another process holds this partition right now.
    Busy,
    /// A failed event waits for its retry.
    WaitingUntil(DateTime<Utc>),
}

/// A subscription of a hosted module, ready to run.
pub(crate) struct Consumer {
    /// The subscribing module (whose schema keeps the cursor).
    pub subscriber: &'static str,
    pub pool: PgPool,
    pub subscription: Subscription,
    pub log: Arc<dyn EventLog>,
    pub metrics: BusMetrics,
    pub batch: i64,
    pub poll_interval: Duration,
    /// This process's identity in the consumer group.
    pub member: Uuid,
    pub heartbeat_every: Duration,
    pub session_timeout: Duration,
    /// The partitions this member currently owns.
    pub owned: watch::Sender<Vec<i32>>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("subscriber", &self.subscriber)
            .field("subscription", &self.subscription)
            .finish()
    }
}

impl Consumer {
    pub fn name(&self) -> &'static str {
        self.subscription.name
    }

    fn partition(&self, index: i32) -> Partition {
        Partition { index, count: i32::from(self.subscription.partitions) }
    }

    /// Creates the cursor rows on first start. A changed partition count restarts every new
    /// partition from the slowest old cursor: events may be handled again (handlers are
    /// idempotent), none is skipped.
    pub async fn ensure_cursors(&self) -> anyhow::Result<()> {
        let count = i32::from(self.subscription.partitions);
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('bulkhead.subscription.' || $1, 0))")
            .bind(self.name())
            .execute(&mut *tx)
            .await?;
        let existing: Vec<(i32, i32, i64, String)> = sqlx::query_as(
            "SELECT partition, partitions, position, source FROM bus_cursors WHERE subscription = $1 FOR UPDATE",
        )
        .bind(self.name())
        .fetch_all(&mut *tx)
        .await?;
        if let Some((_, _, _, source)) = existing.iter().find(|row| row.3 != self.subscription.source) {
            anyhow::bail!(
                "subscription {} used to read {source} and now reads {}: give it a new name",
                self.name(),
                self.subscription.source
            );
        }
        let start = if existing.is_empty() {
            match self.subscription.start_from {
                StartFrom::Beginning => 0,
                StartFrom::Latest => self.log.head(&mut tx, self.subscription.source).await?,
            }
        } else if existing.iter().all(|row| row.1 == count) && existing.len() == usize::try_from(count)? {
            return Ok(());
        } else {
            let slowest = existing.iter().map(|row| row.2).min().unwrap_or(0);
            tracing::warn!(subscription = self.name(), from = existing[0].1, to = count, slowest, "repartitioning");
            sqlx::query("DELETE FROM bus_cursors WHERE subscription = $1").bind(self.name()).execute(&mut *tx).await?;
            slowest
        };
        sqlx::query(
            "INSERT INTO bus_cursors (subscription, partition, partitions, source, position)
             SELECT $1, p, $2, $3, $4 FROM generate_series(0, $2 - 1) AS p
             ON CONFLICT (subscription, partition) DO NOTHING",
        )
        .bind(self.name())
        .bind(count)
        .bind(self.subscription.source)
        .bind(start)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Renews this member's heartbeat, expires members that stopped beating, and works out
    /// which partitions this member owns now.
    pub async fn heartbeat(&self) -> anyhow::Result<Vec<i32>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO bus_members (subscription, member, heartbeat_at) VALUES ($1, $2, now())
             ON CONFLICT (subscription, member) DO UPDATE SET heartbeat_at = now()",
        )
        .bind(self.name())
        .bind(self.member)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM bus_members WHERE subscription = $1 AND heartbeat_at < now() - $2::interval")
            .bind(self.name())
            .bind(self.session_timeout)
            .execute(&mut *tx)
            .await?;
        let members: Vec<Uuid> =
            sqlx::query_scalar("SELECT member FROM bus_members WHERE subscription = $1 ORDER BY member")
                .bind(self.name())
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        let owned: Vec<i32> = (0..i32::from(self.subscription.partitions))
            .filter(|p| {
                let slot = usize::try_from(*p).unwrap_or(0) % members.len().max(1);
                members.get(slot) == Some(&self.member)
            })
            .collect();
        self.owned.send_if_modified(|current| {
            let changed = *current != owned;
            if changed {
                tracing::info!(subscription = self.name(), partitions = ?owned, members = members.len(), "partitions assigned");
                current.clone_from(&owned);
            }
            changed
        });
        Ok(owned)
    }

    /// Keeps this member in the group until cancelled, then leaves it so the others take
    /// over its partitions at their next heartbeat.
    pub async fn run_membership(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            if let Err(error) = self.heartbeat().await {
                tracing::warn!(subscription = self.name(), "consumer group heartbeat failed: {error:#}");
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(self.heartbeat_every) => {}
            }
        }
        let left = sqlx::query("DELETE FROM bus_members WHERE subscription = $1 AND member = $2")
            .bind(self.name())
            .bind(self.member)
            .execute(&self.pool)
            .await;
        if let Err(error) = left {
            tracing::warn!(subscription = self.name(), "leaving the consumer group failed: {error}");
        }
    }

    /// Handles partition `index` whenever this member owns it, until cancelled.
    pub async fn run_partition(self: Arc<Self>, index: i32, cancel: CancellationToken) {
        let mut wakeups = self.log.wakeups(self.subscription.source);
        let mut owned = self.owned.subscribe();
        let mut failures = 0_u32;
        loop {
            if !owned.borrow_and_update().contains(&index) {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    _ = owned.changed() => continue,
                }
            }
            wakeups.borrow_and_update();
            let pause = match self.process_batch(index).await {
                Ok(Progress::Moved) => {
                    failures = 0;
                    continue;
                }
                Ok(Progress::Idle | Progress::Busy) => {
                    failures = 0;
                    self.poll_interval
                }
                Ok(Progress::WaitingUntil(at)) => {
                    failures = 0;
                    let until = (at - Utc::now()).to_std().unwrap_or_default();
                    // A retry is due at a time, not on news: do not wake early for new events.
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(until) => continue,
                    }
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(
                        subscription = self.name(),
                        partition = index,
                        "consuming failed, will retry: {error:#}"
                    );
                    Duration::from_millis(100 * u64::from(failures.min(50)))
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = wakeups.changed() => {}
                _ = owned.changed() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Claims partition `index`, handles up to one batch and commits.
    pub async fn process_batch(&self, index: i32) -> anyhow::Result<Progress> {
        let mut tx = self.pool.begin().await?;
        let claimed: Option<(i64, i32, Option<DateTime<Utc>>)> = sqlx::query_as(
            "SELECT position, attempts, retry_at FROM bus_cursors
              WHERE subscription = $1 AND partition = $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(self.name())
        .bind(index)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((mut position, mut attempts, retry_at)) = claimed else {
            return Ok(Progress::Busy);
        };
        if let Some(at) = retry_at.filter(|at| *at > Utc::now()) {
            return Ok(Progress::WaitingUntil(at));
        }
        let events =
            self.log.read(&mut tx, self.subscription.source, self.partition(index), position, self.batch).await?;
        if events.is_empty() {
            return Ok(Progress::Idle);
        }

        let started_at = position;
        let mut last_error: Option<String> = None;
        let mut next_retry: Option<DateTime<Utc>> = None;
        let mut savepoint = false;
        for event in &events {
            let Some(handler) = self.subscription.handler(&event.event_type) else {
                position = event.position; // not this subscription's business
                continue;
            };
            let sql =
                if savepoint { "RELEASE SAVEPOINT bus_event; SAVEPOINT bus_event" } else { "SAVEPOINT bus_event" };
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            savepoint = true;
            match self.invoke(handler.as_ref(), &mut tx, event).await {
                Ok(()) => {
                    position = event.position;
                    attempts = 0;
                    self.metrics.delivered(self.name());
                }
                Err(error) => {
                    sqlx::raw_sql("ROLLBACK TO SAVEPOINT bus_event").execute(&mut *tx).await?;
                    attempts += 1;
                    let cause = format!("{error:#}");
                    if attempts >= i32::try_from(self.subscription.retry.max_attempts)? {
                        self.dead_letter(&mut tx, index, event, &cause, attempts).await?;
                        position = event.position;
                        attempts = 0;
                        continue;
                    }
                    let delay = self.subscription.retry.delay_after(u32::try_from(attempts)?);
                    next_retry = Some(Utc::now() + delay);
                    tracing::warn!(
                        subscription = self.name(),
                        event_id = %event.id,
                        attempts,
                        retry_in = ?delay,
                        "handler failed: {cause}"
                    );
                    last_error = Some(cause);
                    self.metrics.retried(self.name());
                    break;
                }
            }
        }
        if savepoint {
            sqlx::raw_sql("RELEASE SAVEPOINT bus_event").execute(&mut *tx).await?;
        }
        sqlx::query(
            "UPDATE bus_cursors SET position = $3, attempts = $4, last_error = $5, retry_at = $6, updated_at = now()
              WHERE subscription = $1 AND partition = $2",
        )
        .bind(self.name())
        .bind(index)
        .bind(position)
        .bind(attempts)
        .bind(&last_error)
        .bind(next_retry)
        .execute(&mut *tx)
        .await?;
        tx.commit().await.context("committing a batch")?;
        Ok(match next_retry {
            Some(at) if position == started_at => Progress::WaitingUntil(at),
            _ => Progress::Moved,
        })
    }

    /// Runs one handler in its span, with a time limit, turning a panic into an error.
    pub async fn invoke(
        &self,
        handler: &dyn ErasedHandler,
        tx: &mut PgConnection,
        event: &EventEnvelope,
    ) -> anyhow::Result<()> {
        let span = tracing::info_span!(
            "bus.handle",
            subscription = self.name(),
            event_id = %event.id,
            event_type = %event.event_type,
            position = event.position,
            correlation_id = %event.metadata.correlation_id,
            trace_id = event.metadata.traceparent.as_deref().and_then(super::event::traceparent::trace_id).unwrap_or(""),
            traceparent = event.metadata.traceparent.as_deref().unwrap_or(""),
        );
        let started = Instant::now();
        let mut ctx = HandlerContext { tx, envelope: event };
        let outcome = tokio::time::timeout(
            self.subscription.handler_timeout,
            AssertUnwindSafe(handler.handle(&mut ctx)).catch_unwind(),
        )
        .instrument(span)
        .await;
        self.metrics.handler_took(self.name(), started.elapsed().as_secs_f64());
        match outcome {
            Ok(Ok(result)) => result,
            Ok(Err(_panic)) => Err(anyhow::anyhow!("the handler panicked")),
            Err(_elapsed) => {
                Err(anyhow::anyhow!("the handler took longer than {:?}", self.subscription.handler_timeout))
            }
        }
    }

    async fn dead_letter(
        &self,
        tx: &mut PgConnection,
        partition: i32,
        event: &EventEnvelope,
        cause: &str,
        attempts: i32,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO dead_letters (id, subscription, partition, source, position, event_id, event_type, event_version,
                                       aggregate_key, payload, metadata, occurred_at, error, attempts)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (subscription, event_id) DO NOTHING",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(self.name())
        .bind(partition)
        .bind(self.subscription.source)
        .bind(event.position)
        .bind(event.id)
        .bind(&event.event_type)
        .bind(event.event_version)
        .bind(&event.aggregate_key)
        .bind(&event.payload)
        .bind(serde_json::to_value(&event.metadata)?)
        .bind(event.occurred_at)
        .bind(cause)
        .bind(attempts)
        .execute(&mut *tx)
        .await
        .context("dead-lettering an event")?;
        tracing::error!(subscription = self.name(), event_id = %event.id, attempts, "event dead-lettered: {cause}");
        self.metrics.dead_lettered(self.name());
        Ok(())
    }
}
