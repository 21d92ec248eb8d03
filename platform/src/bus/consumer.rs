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

/// How soon a partition moves past events it has no handler for, when nothing else wakes it:
/// one transaction skips all that came meanwhile (so its lag returns to zero), instead of one
/// per event.
const SKIP_AFTER: Duration = Duration::from_secs(1);

/// How a batch went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// At least one event was handled, skipped or dead-lettered. `drained`: the batch was not
    /// full, so everything sequenced before it was read has been handled, and the partition
    /// can wait for its next wake-up rather than look again (which would cost a transaction).
    Moved { drained: bool },
    /// Nothing new.
    Idle,
    /// Another process holds this partition right now.
    Busy,
    /// A failed event waits for its retry.
    WaitingUntil(DateTime<Utc>),
}

/// What a heartbeat found: the live members of the group, or that this member stays out.
#[derive(Debug)]
pub(crate) enum Membership {
    Members(Vec<Uuid>),
    Outside,
}

/// The claimed cursor row of a partition.
#[derive(Debug, sqlx::FromRow)]
struct Claimed {
    position: i64,
    partitions: i32,
    attempts: i32,
    retry_at: Option<DateTime<Utc>>,
}

/// What became of a handler found to have broken its transaction.
#[derive(Debug)]
enum Undone {
    DeadLettered,
    Retrying,
    /// The transaction could not even be rolled back to the savepoint.
    Lost(String),
}

/// Releases the previous event's savepoint (if any) and opens this event's, in one round trip.
async fn open_savepoint(tx: &mut PgConnection, previous: bool) -> anyhow::Result<()> {
    let sql = if previous { "RELEASE SAVEPOINT bus_event; SAVEPOINT bus_event" } else { "SAVEPOINT bus_event" };
    sqlx::raw_sql(sql).execute(tx).await?;
    Ok(())
}

/// The cursor as a batch leaves it.
#[derive(Debug, Clone)]
struct Cursor {
    position: i64,
    attempts: i32,
    last_error: Option<String>,
    retry_at: Option<DateTime<Utc>>,
}

/// What a batch did, counted into the metrics only once it committed.
#[derive(Debug, Default)]
struct Counts {
    delivered: u64,
    retried: u64,
    dead_lettered: u64,
}

impl Counts {
    fn record(&self, metrics: &BusMetrics, subscription: &str) {
        metrics.delivered(subscription, self.delivered);
        metrics.retried(subscription, self.retried);
        metrics.dead_lettered(subscription, self.dead_lettered);
    }
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
    /// Longest idle wait while wake-ups are lost.
    pub poll_interval: Duration,
    /// Longest idle wait while wake-ups are pushed (a safety net).
    pub listening_poll_interval: Duration,
    /// This process's identity in the consumer group.
    pub member: Uuid,
    pub session_timeout: Duration,
    /// The partitions this member currently owns.
    pub owned: watch::Sender<Vec<i32>>,
    /// Whether the cursors are prepared and consuming has begun (a subscription to a source
    /// another process has not created yet waits; [`Consumer::run_once_source_is_ready`]).
    pub started: std::sync::atomic::AtomicBool,
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
        self.log.prepare(self.subscription.source, count).await?;
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
                StartFrom::Latest => self.log.head(&mut tx, self.subscription.source, self.partition(0)).await?,
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
    /// which partitions this member owns now, in a transaction of its own.
    pub async fn heartbeat(&self) -> anyhow::Result<Vec<i32>> {
        let mut tx = self.pool.begin().await?;
        let membership = self.renew(&mut tx).await?;
        tx.commit().await?;
        Ok(self.apply(membership))
    }

    /// The statement of a heartbeat, on the caller's transaction (one transaction renews
    /// every subscription of a module). Apply what it returns once that transaction commits.
    ///
    /// One statement: it renews this member, expires members that stopped beating and reads
    /// the live ones. A member configured with another partition count than the stored one
    /// (a rolling deploy that resizes the subscription) leaves the group instead, so no
    /// partition is dealt to a member that would refuse it. Every part sees the snapshot the
    /// statement started with, so the live members are read as those not expired, plus this
    /// one.
    pub(crate) async fn renew(&self, tx: &mut PgConnection) -> anyhow::Result<Membership> {
        let (outside, members): (bool, Vec<Uuid>) = sqlx::query_as(
            "WITH resized AS (
                 SELECT EXISTS (SELECT 1 FROM bus_cursors WHERE subscription = $1 AND partitions <> $4) AS outside),
             leaving AS (
                 DELETE FROM bus_members
                  WHERE subscription = $1 AND member = $2 AND (SELECT outside FROM resized)),
             beating AS (
                 INSERT INTO bus_members (subscription, member, heartbeat_at)
                 SELECT $1, $2, now() FROM resized WHERE NOT resized.outside
                 ON CONFLICT (subscription, member) DO UPDATE SET heartbeat_at = now()),
             expired AS (
                 DELETE FROM bus_members
                  WHERE subscription = $1 AND member <> $2 AND heartbeat_at < now() - $3::interval)
             SELECT resized.outside,
                    array(SELECT member FROM bus_members
                           WHERE subscription = $1 AND member <> $2 AND heartbeat_at >= now() - $3::interval
                          UNION SELECT $2 WHERE NOT resized.outside
                          ORDER BY 1)
               FROM resized",
        )
        .bind(self.name())
        .bind(self.member)
        .bind(self.session_timeout)
        .bind(i32::from(self.subscription.partitions))
        .fetch_one(&mut *tx)
        .await?;
        Ok(if outside { Membership::Outside } else { Membership::Members(members) })
    }

    /// Takes the partitions a committed heartbeat dealt this member; returns them.
    pub(crate) fn apply(&self, membership: Membership) -> Vec<i32> {
        let Membership::Members(members) = membership else {
            self.owned.send_if_modified(|current| {
                let changed = !current.is_empty();
                if changed {
                    tracing::warn!(
                        subscription = self.name(),
                        "partition count changed elsewhere; leaving the consumer group"
                    );
                    current.clear();
                }
                changed
            });
            return Vec::new();
        };
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
        owned
    }

    /// Prepares the cursors again and again (backing off up to half a minute) until the
    /// source can be read, then consumes as usual.
    pub async fn run_once_source_is_ready(self: Arc<Self>, cancel: CancellationToken) {
        let mut pause = Duration::from_millis(250);
        loop {
            let prepared = async {
                self.ensure_cursors().await?;
                self.heartbeat().await
            };
            match prepared.await {
                Ok(_) => break,
                Err(error) => tracing::debug!(subscription = self.name(), "the source is not readable yet: {error:#}"),
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
            // Short: the wait ends when another process starts, which is soon.
            pause = (pause * 2).min(Duration::from_secs(2));
        }
        self.started.store(true, std::sync::atomic::Ordering::SeqCst);
        tracing::info!(subscription = self.name(), "the source can be read: subscription started");
        // Its module's membership task renews it from now on.
        let mut tasks = tokio::task::JoinSet::new();
        for partition in 0..i32::from(self.subscription.partitions) {
            tasks.spawn(self.clone().run_partition(partition, cancel.clone()));
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Handles partition `index` whenever this member owns it, until cancelled.
    pub async fn run_partition(self: Arc<Self>, index: i32, cancel: CancellationToken) {
        // News of events it handles wakes the partition at once; news of others only, which
        // it skips, within `SKIP_AFTER`, together with whatever else came meanwhile.
        let types = self.subscription.event_types();
        let mut wakeups = self.log.partition_wakeups(self.subscription.source, self.partition(index), &types);
        let mut skippable = self.log.partition_wakeups(self.subscription.source, self.partition(index), &[]);
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
            skippable.borrow_and_update();
            let pause = match self.process_batch(index).await {
                Ok(Progress::Moved { drained: false }) => {
                    failures = 0;
                    continue;
                }
                Ok(Progress::Moved { drained: true } | Progress::Idle) => {
                    failures = 0;
                    // Sequencing wakes this partition when its keys get events (a wake-up that
                    // came while the batch ran ends the wait at once); polling is a safety net
                    // then, spread so partitions do not look all at once.
                    if self.log.pushes_wakeups() {
                        self.listening_poll_interval.mul_f64(0.75 + rand::random::<f64>() / 2.0)
                    } else {
                        self.poll_interval
                    }
                }
                Ok(Progress::Busy) => {
                    failures = 0;
                    self.poll_interval
                }
                Ok(Progress::WaitingUntil(at)) => {
                    failures = 0;
                    let until = (at - Utc::now()).to_std().unwrap_or_default();
                    // The retry is due at a time; news wakes it only to re-check (a rewind or
                    // a replay may have cleared the wait).
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(until) => continue,
                        _ = wakeups.changed() => continue,
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
                _ = skippable.changed() => {
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        _ = wakeups.changed() => {}
                        () = tokio::time::sleep(SKIP_AFTER) => {}
                    }
                }
                _ = owned.changed() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Claims partition `index`, handles up to one batch and commits.
    pub async fn process_batch(&self, index: i32) -> anyhow::Result<Progress> {
        self.process_batch_of(index, self.batch).await
    }

    /// Opens the batch transaction and claims the partition's cursor; `None` when another
    /// member holds it, or when the stored partition count is not ours (a rolling deploy that
    /// changes the count: reading with the wrong count would skip events).
    async fn claim(&self, index: i32) -> anyhow::Result<Option<(sqlx::Transaction<'static, sqlx::Postgres>, Claimed)>> {
        let mut tx = self.pool.begin().await?;
        // A handler stuck on a lock must not hold the partition for longer than its time
        // limit: the transaction's statement_timeout is set in the same round trip as the claim.
        let timeout_ms = self.subscription.handler_timeout.as_millis().max(1).to_string();
        let claimed: Option<Claimed> = sqlx::query_as(
            "SELECT position, partitions, attempts, retry_at
               FROM bus_cursors, (SELECT set_config('statement_timeout', $3, true)) AS limits
              WHERE subscription = $1 AND partition = $2 FOR UPDATE OF bus_cursors SKIP LOCKED",
        )
        .bind(self.name())
        .bind(index)
        .bind(timeout_ms)
        .fetch_optional(&mut *tx)
        .await?;
        match claimed {
            Some(claimed) if claimed.partitions != i32::from(self.subscription.partitions) => {
                tracing::warn!(
                    subscription = self.name(),
                    stored = claimed.partitions,
                    configured = self.subscription.partitions,
                    "partition count differs from the stored one; not consuming until every process agrees"
                );
                Ok(None)
            }
            Some(claimed) => Ok(Some((tx, claimed))),
            None => Ok(None),
        }
    }

    async fn process_batch_of(&self, index: i32, limit: i64) -> anyhow::Result<Progress> {
        let Some((mut tx, claimed)) = self.claim(index).await? else {
            return Ok(Progress::Busy);
        };
        if let Some(at) = claimed.retry_at.filter(|at| *at > Utc::now()) {
            return Ok(Progress::WaitingUntil(at));
        }
        let events = self
            .log
            .read(&mut tx, self.name(), self.subscription.source, self.partition(index), claimed.position, limit)
            .await?;
        if events.is_empty() {
            return Ok(Progress::Idle);
        }

        let mut cursor =
            Cursor { position: claimed.position, attempts: claimed.attempts, last_error: None, retry_at: None };
        let mut counts = Counts::default();
        // The last handler that reported success, with the cursor before it: its savepoint is
        // released together with the next one's creation (one round trip per event), and a
        // release that fails means that handler left the transaction unusable.
        let mut unconfirmed: Option<(usize, Cursor)> = None;
        let mut savepoint = false;
        for (i, event) in events.iter().enumerate() {
            let Some(handler) = self.subscription.handler(&event.event_type) else {
                cursor.position = event.position; // not this subscription's business
                continue;
            };
            if let Err(error) = open_savepoint(&mut tx, savepoint).await {
                let Some((previous, before)) = unconfirmed.take() else { return Err(error) };
                match self.undo(&mut tx, index, &events[previous], before, &error, &mut cursor, &mut counts).await? {
                    Undone::DeadLettered => open_savepoint(&mut tx, true).await?,
                    Undone::Retrying => break,
                    Undone::Lost(cause) => {
                        drop(tx);
                        return Box::pin(self.after_lost_transaction(index, previous, &events[previous], cause)).await;
                    }
                }
            }
            unconfirmed = None;
            savepoint = true;
            let before = cursor.clone();
            match self.invoke(handler.as_ref(), &mut tx, event).await {
                Ok(()) => {
                    cursor.position = event.position;
                    cursor.attempts = 0;
                    counts.delivered += 1;
                    unconfirmed = Some((i, before));
                }
                Err(error) => {
                    if let Err(lost) = sqlx::raw_sql("ROLLBACK TO SAVEPOINT bus_event").execute(&mut *tx).await {
                        drop(tx); // rolls back the whole batch
                        let cause = format!("{error:#} (the transaction was lost: {lost})");
                        return Box::pin(self.after_lost_transaction(index, i, event, cause)).await;
                    }
                    let cause = format!("{error:#}");
                    if is_contention(&error) {
                        // A deadlock or serialisation failure says nothing about the event: commit
                        // what went before (freeing its locks) and try again soon, uncounted.
                        let delay = std::time::Duration::from_millis(50 + u64::from(rand::random::<u8>()));
                        tracing::info!(subscription = self.name(), event_id = %event.id, "lock contention; retrying: {cause}");
                        cursor.last_error = Some(cause);
                        cursor.retry_at = Some(Utc::now() + delay);
                        counts.retried += 1;
                        break;
                    }
                    if !self.fail(&mut tx, index, event, cursor.attempts + 1, &cause, &mut cursor, &mut counts).await? {
                        break; // the partition waits for the retry
                    }
                    // Dead-lettered: later events proceed (the next savepoint comes after the letter).
                }
            }
        }
        if savepoint && let Err(error) = sqlx::raw_sql("RELEASE SAVEPOINT bus_event").execute(&mut *tx).await {
            let Some((previous, before)) = unconfirmed.take() else { return Err(error.into()) };
            let error = anyhow::Error::from(error);
            if let Undone::Lost(cause) =
                self.undo(&mut tx, index, &events[previous], before, &error, &mut cursor, &mut counts).await?
            {
                drop(tx);
                return Box::pin(self.after_lost_transaction(index, previous, &events[previous], cause)).await;
            }
        }
        self.save_cursor(&mut tx, index, &cursor).await?;
        tx.commit().await.context("committing a batch")?;
        counts.record(&self.metrics, self.name());
        Ok(match cursor.retry_at {
            Some(at) if cursor.position == claimed.position => Progress::WaitingUntil(at),
            // A retry is waiting after what was handled: look again, to wait for it.
            Some(_) => Progress::Moved { drained: false },
            None => Progress::Moved { drained: events.len() < usize::try_from(limit).unwrap_or(usize::MAX) },
        })
    }

    /// A handler reported success but its savepoint would not release: it left the
    /// transaction aborted (e.g. it swallowed a database error). Roll its work back and count
    /// the attempt as failed, restoring the cursor to where it was before it.
    #[expect(clippy::too_many_arguments, reason = "one failure's full context")]
    async fn undo(
        &self,
        tx: &mut PgConnection,
        index: i32,
        event: &EventEnvelope,
        before: Cursor,
        error: &anyhow::Error,
        cursor: &mut Cursor,
        counts: &mut Counts,
    ) -> anyhow::Result<Undone> {
        let cause = format!("the handler reported success but left its transaction unusable: {error:#}");
        if let Err(lost) = sqlx::raw_sql("ROLLBACK TO SAVEPOINT bus_event").execute(&mut *tx).await {
            return Ok(Undone::Lost(format!("{cause} (the transaction was lost: {lost})")));
        }
        *cursor = before;
        counts.delivered -= 1;
        if self.fail(tx, index, event, cursor.attempts + 1, &cause, cursor, counts).await? {
            Ok(Undone::DeadLettered)
        } else {
            Ok(Undone::Retrying)
        }
    }

    /// The batch's transaction died while handling `events[broken_at]` (a killed connection,
    /// a handler that ended the transaction). Nothing of the batch committed. The events
    /// before it are handled again on their own; if it was the first, its failed attempt is
    /// recorded in a fresh transaction, so it backs off and is dead-lettered in the end like
    /// any other failure.
    async fn after_lost_transaction(
        &self,
        index: i32,
        broken_at: usize,
        event: &EventEnvelope,
        cause: String,
    ) -> anyhow::Result<Progress> {
        tracing::warn!(subscription = self.name(), event_id = %event.id, "a batch transaction was lost: {cause}");
        if broken_at > 0 {
            return self.process_batch_of(index, i64::try_from(broken_at)?).await;
        }
        let Some((mut tx, claimed)) = self.claim(index).await? else {
            return Ok(Progress::Busy);
        };
        if claimed.position >= event.position {
            return Ok(Progress::Moved { drained: false }); // handled meanwhile by another member
        }
        let mut cursor =
            Cursor { position: claimed.position, attempts: claimed.attempts, last_error: None, retry_at: None };
        let mut counts = Counts::default();
        self.fail(&mut tx, index, event, claimed.attempts + 1, &cause, &mut cursor, &mut counts).await?;
        self.save_cursor(&mut tx, index, &cursor).await?;
        tx.commit().await?;
        counts.record(&self.metrics, self.name());
        Ok(Progress::Moved { drained: false })
    }

    /// Records the `attempts`-th failure of `event` on `cursor`: a retry with backoff, or
    /// after the last attempt a dead letter (the cursor then moves past it). Returns whether
    /// the event was dead-lettered.
    #[expect(clippy::too_many_arguments, reason = "one failure's full context, used at two call sites")]
    async fn fail(
        &self,
        tx: &mut PgConnection,
        index: i32,
        event: &EventEnvelope,
        attempts: i32,
        cause: &str,
        cursor: &mut Cursor,
        counts: &mut Counts,
    ) -> anyhow::Result<bool> {
        if attempts >= i32::try_from(self.subscription.retry.max_attempts)? {
            self.dead_letter(tx, index, event, cause, attempts).await?;
            *cursor = Cursor { position: event.position, attempts: 0, last_error: None, retry_at: None };
            counts.dead_lettered += 1;
            return Ok(true);
        }
        let delay = self.subscription.retry.delay_after(u32::try_from(attempts)?);
        tracing::warn!(subscription = self.name(), event_id = %event.id, attempts, retry_in = ?delay, "handler failed: {cause}");
        cursor.attempts = attempts;
        cursor.last_error = Some(cause.to_owned());
        cursor.retry_at = Some(Utc::now() + delay);
        counts.retried += 1;
        Ok(false)
    }

    async fn save_cursor(&self, tx: &mut PgConnection, index: i32, cursor: &Cursor) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE bus_cursors SET position = $3, attempts = $4, last_error = $5, retry_at = $6, updated_at = now()
              WHERE subscription = $1 AND partition = $2",
        )
        .bind(self.name())
        .bind(index)
        .bind(cursor.position)
        .bind(cursor.attempts)
        .bind(&cursor.last_error)
        .bind(cursor.retry_at)
        .execute(tx)
        .await?;
        Ok(())
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
            "bulkhead.module" = self.subscriber,
            "otel.kind" = "consumer",
        );
        // The handling is part of the trace that appended the event, whichever process did.
        if let Some(traceparent) = &event.metadata.traceparent {
            crate::telemetry::continue_trace(&span, traceparent);
        }
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
             ON CONFLICT (subscription, event_id) DO UPDATE
                SET error = EXCLUDED.error, attempts = EXCLUDED.attempts, position = EXCLUDED.position,
                    partition = EXCLUDED.partition, dead_lettered_at = now(), replayed_at = NULL",
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
        Ok(())
    }
}

/// Whether a handler failed only because it met another transaction: a deadlock (40P01) or a
/// serialisation failure (40001). Retrying succeeds once the other side has committed.
fn is_contention(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(cause.downcast_ref::<sqlx::Error>(), Some(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("40P01" | "40001")))
    })
}
