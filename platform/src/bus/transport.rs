//! The transport seam. A subscription reads its source's log through an [`EventLog`]; the
//! consuming machinery around it (the subscriber's transaction, cursor, savepoints, retries,
//! dead letters) is the same whatever the transport. [`PostgresLog`] reads the publisher's
//! `outbox` directly; a Kafka log reads the topic the publisher's relay feeds, with the same
//! positions-per-partition bookkeeping in the subscriber's `bus_cursors`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::event::{EventEnvelope, Metadata};
use super::listener::Wakeups;

/// One partition of a subscription: events whose key hash is `index` modulo `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub index: i32,
    pub count: i32,
}

/// The read side of a transport.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Checks, before a subscription of `partitions` partitions starts, that `source` can be
    /// read that way. [`SourceNotReady`] when it cannot be read yet (the subscription waits).
    async fn prepare(&self, source: &str, partitions: i32) -> anyhow::Result<()> {
        let _ = (source, partitions);
        Ok(())
    }

    /// Up to `limit` events of `source` in `partition` after position `after`, oldest first,
    /// for `subscription`. Runs on the subscriber's transaction; `after` is the cursor it
    /// holds, so a read proves that everything up to `after` has been handled for good.
    async fn read(
        &self,
        tx: &mut PgConnection,
        subscription: &str,
        source: &str,
        partition: Partition,
        after: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<EventEnvelope>>;

    /// The position of the newest event of `source` (0 when there is none). Positions are
    /// the publisher's outbox positions on every transport, global to the module, so this is
    /// the module's head whichever `partition` asks.
    async fn head(&self, conn: &mut PgConnection, source: &str, partition: Partition) -> anyhow::Result<i64>;

    /// How many events of `partition` come after `after` (capped at `cap`), for `subscription`.
    async fn lag(
        &self,
        conn: &mut PgConnection,
        subscription: &str,
        source: &str,
        partition: Partition,
        after: i64,
        cap: i64,
    ) -> anyhow::Result<i64>;

    /// The first position of `partition` sequenced at or after `time`, if any (for
    /// rewinding to a time).
    async fn position_at(
        &self,
        conn: &mut PgConnection,
        source: &str,
        partition: Partition,
        time: DateTime<Utc>,
    ) -> anyhow::Result<Option<i64>>;

    /// Changes whenever `source` may have new events.
    fn wakeups(&self, source: &str) -> watch::Receiver<u64>;

    /// Changes whenever `source` may have new events of `types` (none: of any type) in
    /// `partition`; by default, whenever it may have new events at all.
    fn partition_wakeups(&self, source: &str, partition: Partition, types: &[&str]) -> watch::Receiver<u64> {
        let _ = (partition, types);
        self.wakeups(source)
    }

    /// Whether wake-ups are pushed right now, so that polling is only a safety net.
    fn pushes_wakeups(&self) -> bool {
        false
    }
}

/// The source's log cannot be read yet: its publisher has not started (no outbox, no topic).
/// Its subscriptions wait for it instead of failing, so processes can start in any order.
#[derive(Debug, thiserror::Error)]
#[error("the event log of `{0}` does not exist yet")]
pub struct SourceNotReady(pub String);

/// The publishing side of a transport other than the outbox itself: forwards a hosted
/// module's sequenced events (a Kafka relay).
#[async_trait]
pub trait Relay: Send + Sync + 'static {
    /// Checks, before the bus starts, that `module`'s events can be forwarded (its topic
    /// exists or was created, with the expected partitions). A broker that cannot be reached
    /// is not an error here: the relay waits for it.
    async fn prepare(&self, module: &str) -> anyhow::Result<()>;

    /// Forwards `module`'s sequenced events, woken by its sequencing, until cancelled.
    async fn run(self: Arc<Self>, module: &'static str, pool: PgPool, wakeups: Wakeups, cancel: CancellationToken);

    /// Whether the relay can reach its broker right now (readiness).
    fn connected(&self) -> bool;
}

/// Reads the publisher's `outbox` in the same database (the subscriber's role has `SELECT`).
///
/// A publisher whose schema does not exist yet (its module is not deployed, or its process
/// has not started) reads as an empty log: subscribers wait for it instead of failing, so
/// processes can start in any order.
#[derive(Debug, Clone)]
pub struct PostgresLog {
    wakeups: Wakeups,
    /// Sources whose outbox has been seen; an outbox never goes away once there.
    present: Arc<Mutex<HashSet<String>>>,
    /// Sources already reported missing, so the warning is logged once, not on every poll.
    reported: Arc<Mutex<HashSet<String>>>,
}

impl PostgresLog {
    pub fn new(wakeups: Wakeups) -> Self {
        Self { wakeups, present: Arc::default(), reported: Arc::default() }
    }

    /// Whether `source`'s outbox exists (asked of the database until it does).
    async fn exists(&self, conn: &mut PgConnection, source: &str) -> anyhow::Result<bool> {
        if self.present.lock().is_ok_and(|present| present.contains(source)) {
            return Ok(true);
        }
        let found: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(outbox(source)?)
            .fetch_one(&mut *conn)
            .await?;
        if found && let Ok(mut present) = self.present.lock() {
            present.insert(source.to_owned());
        } else if !found && self.reported.lock().is_ok_and(|mut reported| reported.insert(source.to_owned())) {
            // Expected while the publisher has not started; a typo in a subscription shows here.
            tracing::warn!(source, "no outbox for this source yet; its subscribers wait for it");
        }
        Ok(found)
    }
}

/// A sequenced outbox row as readers select it (`id, position, event_type, event_version,
/// aggregate_key, payload, metadata, occurred_at`).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct OutboxRow {
    id: uuid::Uuid,
    pub(crate) position: i64,
    event_type: String,
    event_version: i32,
    aggregate_key: String,
    payload: serde_json::Value,
    metadata: serde_json::Value,
    pub(crate) occurred_at: DateTime<Utc>,
}

impl OutboxRow {
    /// The event the row holds, as published by `source`.
    pub(crate) fn into_envelope(self, source: &str) -> EventEnvelope {
        EventEnvelope {
            id: self.id,
            source: source.to_owned(),
            position: self.position,
            event_type: self.event_type,
            event_version: self.event_version,
            aggregate_key: self.aggregate_key,
            payload: self.payload,
            metadata: serde_json::from_value::<Metadata>(self.metadata).unwrap_or_default(),
            occurred_at: self.occurred_at,
        }
    }
}

fn outbox(source: &str) -> anyhow::Result<String> {
    let valid = source.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && source.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    anyhow::ensure!(valid, "`{source}` is not a module name");
    Ok(format!("{source}.outbox"))
}

#[async_trait]
impl EventLog for PostgresLog {
    async fn read(
        &self,
        tx: &mut PgConnection,
        _subscription: &str,
        source: &str,
        partition: Partition,
        after: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<EventEnvelope>> {
        if !self.exists(tx, source).await? {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT id, position, event_type, event_version, aggregate_key, payload, metadata, occurred_at
               FROM {} WHERE position > $1 AND key_hash % $2 = $3 ORDER BY position LIMIT $4",
            outbox(source)?
        );
        let rows: Vec<OutboxRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(after)
            .bind(partition.count)
            .bind(partition.index)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        Ok(rows.into_iter().map(|row| row.into_envelope(source)).collect())
    }

    async fn head(&self, conn: &mut PgConnection, source: &str, _partition: Partition) -> anyhow::Result<i64> {
        if !self.exists(conn, source).await? {
            return Ok(0);
        }
        let sql = format!("SELECT coalesce(max(position), 0) FROM {}", outbox(source)?);
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(conn).await?)
    }

    async fn lag(
        &self,
        conn: &mut PgConnection,
        _subscription: &str,
        source: &str,
        partition: Partition,
        after: i64,
        cap: i64,
    ) -> anyhow::Result<i64> {
        if !self.exists(conn, source).await? {
            return Ok(0);
        }
        let sql = format!(
            "SELECT count(*) FROM (SELECT 1 FROM {} WHERE position > $1 AND key_hash % $2 = $3 LIMIT $4) behind",
            outbox(source)?
        );
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(after)
            .bind(partition.count)
            .bind(partition.index)
            .bind(cap)
            .fetch_one(conn)
            .await?)
    }

    async fn position_at(
        &self,
        conn: &mut PgConnection,
        source: &str,
        partition: Partition,
        time: DateTime<Utc>,
    ) -> anyhow::Result<Option<i64>> {
        if !self.exists(conn, source).await? {
            return Ok(None);
        }
        let sql = format!(
            "SELECT min(position) FROM {} WHERE position IS NOT NULL AND sequenced_at >= $1 AND key_hash % $2 = $3",
            outbox(source)?
        );
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(time)
            .bind(partition.count)
            .bind(partition.index)
            .fetch_one(conn)
            .await?)
    }

    fn wakeups(&self, source: &str) -> watch::Receiver<u64> {
        self.wakeups.sequenced(source)
    }

    fn partition_wakeups(&self, source: &str, partition: Partition, types: &[&str]) -> watch::Receiver<u64> {
        self.wakeups.sequenced_in_of(source, partition.count, partition.index, types)
    }

    fn pushes_wakeups(&self) -> bool {
        self.wakeups.listening()
    }
}
