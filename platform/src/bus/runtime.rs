//! The bus of one process: the sequencers of the modules it hosts, the consumers of their
//! subscriptions, the listener that wakes them, lag metrics, and the operator operations
//! (status, dead letters, replay, rewind). Retention runs as jobs (`bus/retention.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use uuid::Uuid;

use super::consumer::Consumer;
use super::event::{EventEnvelope, Metadata};
use super::listener::{self, Wakeups};
use super::metrics::BusMetrics;
use super::sequencer;
use super::subscription::Subscription;
use super::transport::{EventLog, Partition, PostgresLog, Relay};
use crate::metrics::Metrics;

/// Tuning of a bus; the defaults suit production.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// Events per consumer transaction. Each writing handler's savepoint takes one of the 64
    /// subtransaction ids PostgreSQL caches per transaction; past that every session's
    /// snapshots get slower, hence 64 at most by default.
    pub batch_size: i64,
    /// Rows per sequencing transaction.
    pub sequencer_batch: i64,
    /// Longest wait for work when notifications are lost.
    pub poll_interval: Duration,
    /// Longest wait for work while notifications arrive. Every append and every sequencing
    /// notifies, so this is a safety net only; waiting less costs a transaction per
    /// partition per wait when there is nothing to do.
    pub listening_poll_interval: Duration,
    /// How long a sequencer woken by an append waits for more before numbering: one
    /// transaction then numbers (and one notification announces) what several appends wrote.
    pub sequencer_linger: Duration,
    /// Sequenced events older than this are deleted (Kafka's `retention.ms`).
    pub retention: Duration,
    /// How often the retention sweep runs (as the `bus.retention.<module>` jobs).
    pub retention_every: Duration,
    /// How often lag and dead-letter gauges are refreshed.
    pub gauges_every: Duration,
    /// How often a process renews its membership of each consumer group.
    pub heartbeat_every: Duration,
    /// A member silent this long is presumed dead and its partitions are dealt out again.
    pub session_timeout: Duration,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            batch_size: 64,
            sequencer_batch: 1000,
            poll_interval: Duration::from_secs(1),
            listening_poll_interval: Duration::from_secs(120),
            sequencer_linger: Duration::from_millis(1),
            retention: Duration::from_secs(7 * 24 * 3600),
            retention_every: Duration::from_secs(3600),
            gauges_every: Duration::from_secs(15),
            // One transaction per subscribing module each time (Kafka: 3 s and 45 s).
            heartbeat_every: Duration::from_secs(5),
            session_timeout: Duration::from_secs(20),
        }
    }
}

/// Assembles a [`Bus`] from the hosted modules' pools and subscriptions.
pub struct BusBuilder {
    inner: Inner,
    member: Uuid,
}

impl std::fmt::Debug for BusBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusBuilder").field("publishers", &self.inner.publishers.len()).finish_non_exhaustive()
    }
}

impl BusBuilder {
    /// A bus on the PostgreSQL transport.
    pub fn new(config: BusConfig, metrics: &Metrics) -> Self {
        Self::with_wakeups(config, metrics, Wakeups::default())
    }

    /// A bus whose listener feeds `wakeups`, which parts of the process built before the bus
    /// (an order's event stream) already follow.
    pub fn with_wakeups(config: BusConfig, metrics: &Metrics, wakeups: Wakeups) -> Self {
        let inner = Inner {
            config,
            metrics: BusMetrics::register(metrics),
            log: Arc::new(PostgresLog::new(wakeups.clone())),
            relay: None,
            wakeups,
            publishers: Vec::new(),
            consumers: Vec::new(),
            gauges_stale: AtomicBool::new(false),
        };
        Self { inner, member: Uuid::now_v7() }
    }

    /// Reads subscriptions' events through another transport (Kafka), before any
    /// subscription is added.
    pub fn with_log(mut self, log: Arc<dyn EventLog>) -> Self {
        self.inner.log = log;
        self
    }

    /// Forwards the hosted publishers' sequenced events through `relay` as well (Kafka).
    pub fn with_relay(mut self, relay: Arc<dyn Relay>) -> Self {
        self.inner.relay = Some(relay);
        self
    }

    /// The Kafka transport: publishers' events go out through a relay per module, and
    /// subscriptions read topics instead of outboxes (DESIGN §4, ADR 0025).
    ///
    /// # Errors
    /// A Kafka client that cannot be configured.
    #[cfg(feature = "kafka")]
    pub fn with_kafka(self, config: super::kafka::KafkaConfig) -> anyhow::Result<Self> {
        let log = super::kafka::KafkaLog::new(config.clone(), self.inner.wakeups.clone())?;
        let relay = super::kafka::KafkaRelay::new(config, self.inner.metrics.clone())?;
        Ok(self.with_log(Arc::new(log)).with_relay(Arc::new(relay)))
    }

    /// A hosted module whose outbox this process sequences and sweeps.
    pub fn publisher(mut self, module: &'static str, pool: PgPool) -> Self {
        self.inner.publishers.push((module, pool));
        self
    }

    /// A subscription of hosted module `subscriber`, its cursor kept in that module's schema.
    ///
    /// # Errors
    /// A name already taken, or not prefixed with the subscriber's name.
    pub fn subscription(
        mut self,
        subscriber: &'static str,
        pool: PgPool,
        subscription: Subscription,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            subscription.name.strip_prefix(subscriber).is_some_and(|rest| rest.starts_with('.')),
            "subscription `{}` must be named `{subscriber}.<purpose>`",
            subscription.name
        );
        anyhow::ensure!(
            !self.inner.consumers.iter().any(|c| c.name() == subscription.name),
            "two subscriptions are named `{}`",
            subscription.name
        );
        let config = &self.inner.config;
        let consumer = Consumer {
            subscriber,
            pool,
            subscription,
            log: self.inner.log.clone(),
            metrics: self.inner.metrics.clone(),
            batch: config.batch_size,
            poll_interval: config.poll_interval,
            listening_poll_interval: config.listening_poll_interval,
            member: self.member,
            session_timeout: config.session_timeout,
            owned: tokio::sync::watch::channel(Vec::new()).0,
            started: AtomicBool::new(false),
        };
        self.inner.consumers.push(Arc::new(consumer));
        Ok(self)
    }

    pub fn build(self) -> Bus {
        Bus { inner: Arc::new(self.inner) }
    }
}

struct Inner {
    config: BusConfig,
    metrics: BusMetrics,
    wakeups: Wakeups,
    log: Arc<dyn EventLog>,
    /// Forwards sequenced events to another transport; `None` on PostgreSQL.
    relay: Option<Arc<dyn Relay>>,
    publishers: Vec<(&'static str, PgPool)>,
    consumers: Vec<Arc<Consumer>>,
    /// Set by what changes the gauges without a wake-up (a dead letter replayed here).
    gauges_stale: AtomicBool,
}

/// The event bus of this process. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.inner.consumers.iter().map(|c| c.name()).collect();
        f.debug_struct("Bus").field("subscriptions", &names).finish_non_exhaustive()
    }
}

/// The running tasks of a started bus.
#[derive(Debug)]
pub struct BusTasks {
    tasks: JoinSet<()>,
}

impl BusTasks {
    /// Waits for every task to finish (after the cancellation token fired).
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Where a rewound subscription resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewindTarget {
    /// The next event handled is the first at or after this position.
    Position(i64),
    /// The next event handled is the first sequenced at or after this time.
    Time(DateTime<Utc>),
}

impl std::str::FromStr for RewindTarget {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if let Ok(position) = value.parse::<i64>() {
            return if position >= 1 { Ok(Self::Position(position)) } else { Err("positions start at 1".to_owned()) };
        }
        DateTime::parse_from_rfc3339(value)
            .map(|t| Self::Time(t.with_timezone(&Utc)))
            .map_err(|_| format!("`{value}` is neither a position nor an RFC 3339 time"))
    }
}

/// One partition of a subscription, as operators see it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct PartitionStatus {
    pub subscription: String,
    /// The module that subscribes (and keeps the cursor).
    pub subscriber: String,
    /// The module whose events are read.
    pub source: String,
    pub partition: i32,
    pub partitions: i32,
    /// The consumer-group member (a process) the partition is dealt to.
    pub owner: Option<Uuid>,
    /// Last position handled.
    pub position: i64,
    /// Newest position of the source.
    pub head: i64,
    /// Events of this partition not yet handled (counted up to 100,000).
    pub lag: i64,
    /// Failed attempts at the next event.
    pub attempts: i32,
    pub last_error: Option<String>,
    pub retry_at: Option<DateTime<Utc>>,
    /// Dead letters of the subscription waiting for a replay.
    pub dead_letters: i64,
}

#[derive(sqlx::FromRow)]
struct CursorRow {
    partition: i32,
    partitions: i32,
    position: i64,
    attempts: i32,
    last_error: Option<String>,
    retry_at: Option<DateTime<Utc>>,
}

/// An event a subscription gave up on.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema, sqlx::FromRow)]
pub struct DeadLetter {
    pub id: Uuid,
    pub subscription: String,
    pub partition: i32,
    pub source: String,
    pub position: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub event_version: i32,
    pub aggregate_key: String,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub occurred_at: DateTime<Utc>,
    /// The last error, with its cause chain.
    pub error: String,
    pub attempts: i32,
    pub dead_lettered_at: DateTime<Utc>,
    pub replayed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no dead letter {0}")]
    NotFound(Uuid),
    #[error("dead letter {0} was already replayed")]
    AlreadyReplayed(Uuid),
    #[error("subscription {0} is not hosted here or no longer handles this event type")]
    NoHandler(String),
    #[error("the handler failed again: {0}")]
    Failed(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum RewindError {
    #[error("no subscription {0} is hosted here")]
    UnknownSubscription(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl Bus {
    /// Prepares every subscription's cursors and starts the listener, the sequencers, the
    /// consumers (one task per partition) and the gauges. Retention is not among them: it runs
    /// as jobs ([`Bus::retention_jobs`]).
    ///
    /// # Errors
    /// When a subscription's cursors cannot be prepared.
    pub async fn start(&self, cancel: CancellationToken) -> anyhow::Result<BusTasks> {
        // A source another process publishes may not be readable yet (its process has not
        // migrated it, or not granted it): those subscriptions join when it is.
        if let Some(relay) = &self.inner.relay {
            for (module, _) in &self.inner.publishers {
                relay.prepare(module).await.with_context(|| format!("preparing the relay of {module}"))?;
            }
        }
        let mut waiting = Vec::new();
        for consumer in &self.inner.consumers {
            match consumer.ensure_cursors().await {
                Ok(()) => {}
                Err(error) if source_not_ready(&error) => {
                    tracing::warn!(
                        subscription = consumer.name(),
                        source = consumer.subscription.source,
                        "the source's event log cannot be read yet (is a process hosting it up?); the subscription starts once it can: {error:#}"
                    );
                    waiting.push(consumer.clone());
                    continue;
                }
                Err(error) => return Err(error).with_context(|| format!("preparing subscription {}", consumer.name())),
            }
            consumer.heartbeat().await.with_context(|| format!("joining the consumer group of {}", consumer.name()))?;
            consumer.started.store(true, Ordering::SeqCst);
        }
        let mut tasks = JoinSet::new();
        let listen_pool =
            self.inner.publishers.first().map(|p| &p.1).or_else(|| self.inner.consumers.first().map(|c| &c.pool));
        if let Some(pool) = listen_pool {
            let options = (*pool.connect_options()).clone();
            tasks.spawn(listener::run(options, self.inner.wakeups.clone(), cancel.clone()));
        }
        let config = &self.inner.config;
        for (module, pool) in &self.inner.publishers {
            let pacing = sequencer::Pacing {
                batch: config.sequencer_batch,
                poll_interval: config.poll_interval,
                listening_poll_interval: config.listening_poll_interval,
                linger: config.sequencer_linger,
            };
            if let Some(relay) = &self.inner.relay {
                tasks.spawn(relay.clone().run(module, pool.clone(), self.inner.wakeups.clone(), cancel.clone()));
            }
            tasks.spawn(sequencer::run(
                module,
                pool.clone(),
                self.inner.wakeups.clone(),
                self.inner.metrics.clone(),
                pacing,
                cancel.clone(),
            ));
        }
        for consumer in &self.inner.consumers {
            if waiting.iter().any(|w| Arc::ptr_eq(w, consumer)) {
                tasks.spawn(consumer.clone().run_once_source_is_ready(cancel.clone()));
                continue;
            }
            for partition in 0..i32::from(consumer.subscription.partitions) {
                tasks.spawn(consumer.clone().run_partition(partition, cancel.clone()));
            }
        }
        for group in self.subscriber_groups() {
            tasks.spawn(run_memberships(group, config.heartbeat_every, cancel.clone()));
        }
        let bus = self.clone();
        tasks.spawn(async move { bus.refresh_gauges_periodically(cancel).await });
        Ok(BusTasks { tasks })
    }

    /// The hosted subscriptions grouped by subscribing module (whose schema and pool they
    /// share), in registration order.
    fn subscriber_groups(&self) -> Vec<Vec<Arc<Consumer>>> {
        let mut groups: Vec<Vec<Arc<Consumer>>> = Vec::new();
        for consumer in &self.inner.consumers {
            match groups.iter_mut().find(|group| group[0].subscriber == consumer.subscriber) {
                Some(group) => group.push(consumer.clone()),
                None => groups.push(vec![consumer.clone()]),
            }
        }
        groups
    }

    fn consumer(&self, subscription: &str) -> Option<&Arc<Consumer>> {
        self.inner.consumers.iter().find(|c| c.name() == subscription)
    }

    /// Whether this bus has anything to run (a hosted publisher or subscription).
    pub fn is_empty(&self) -> bool {
        self.inner.publishers.is_empty() && self.inner.consumers.is_empty()
    }

    /// Subscriptions still waiting for their source's event log to become readable (its
    /// process has not created or granted it yet).
    pub fn waiting_subscriptions(&self) -> Vec<&'static str> {
        self.inner.consumers.iter().filter(|c| !c.started.load(Ordering::SeqCst)).map(|c| c.subscription.name).collect()
    }

    /// Changes whenever `module`'s events got positions, in this process or any other on the
    /// same database (a `NOTIFY`); for readers of a log that are not subscriptions, such as
    /// the token verifier's feed of access changes.
    pub fn sequenced_wakeups(&self, module: &str) -> tokio::sync::watch::Receiver<u64> {
        self.inner.wakeups.sequenced(module)
    }

    /// Whether the relay reaches its broker (`None`: no relay, the PostgreSQL transport).
    pub fn relay_connected(&self) -> Option<bool> {
        self.inner.relay.as_ref().map(|relay| relay.connected())
    }

    /// Whether `NOTIFY` wake-ups arrive; without them the bus still works, by polling.
    pub fn notifications_connected(&self) -> bool {
        self.inner.wakeups.listening()
    }

    /// This process's identity in every consumer group it joins.
    pub fn member(&self) -> Uuid {
        self.inner.consumers.first().map_or_else(Uuid::nil, |c| c.member)
    }

    /// The partitions of `subscription` this process handles right now (its view of the
    /// group, renewed every heartbeat).
    pub fn owned_partitions(&self, subscription: &str) -> Vec<i32> {
        self.consumer(subscription).map(|c| c.owned.borrow().clone()).unwrap_or_default()
    }

    /// Names of the subscriptions hosted here.
    pub fn subscriptions(&self) -> Vec<&'static str> {
        self.inner.consumers.iter().map(|c| c.name()).collect()
    }

    /// Every partition of every hosted subscription.
    ///
    /// # Errors
    /// Database failures.
    pub async fn status(&self) -> anyhow::Result<Vec<PartitionStatus>> {
        let mut statuses = Vec::new();
        // One read-only transaction per subscribing module: the gauges read this every few
        // seconds, and a statement outside a transaction is a transaction of its own.
        for group in self.subscriber_groups() {
            let mut conn = group[0].pool.begin().await?;
            for consumer in &group {
                let source = consumer.subscription.source;
                let head = self.inner.log.head(&mut conn, source, Partition { index: 0, count: 1 }).await?;
                let dead_letters: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM dead_letters WHERE subscription = $1 AND replayed_at IS NULL",
                )
                .bind(consumer.name())
                .fetch_one(&mut *conn)
                .await?;
                let members: Vec<Uuid> = sqlx::query_scalar(
                "SELECT member FROM bus_members WHERE subscription = $1 AND heartbeat_at >= now() - $2::interval ORDER BY member",
            )
            .bind(consumer.name())
            .bind(self.inner.config.session_timeout)
            .fetch_all(&mut *conn)
            .await?;
                let rows: Vec<CursorRow> = sqlx::query_as(
                    "SELECT partition, partitions, position, attempts, last_error, retry_at
                   FROM bus_cursors WHERE subscription = $1 ORDER BY partition",
                )
                .bind(consumer.name())
                .fetch_all(&mut *conn)
                .await?;
                for CursorRow { partition, partitions, position, attempts, last_error, retry_at } in rows {
                    let lag = self
                        .inner
                        .log
                        .lag(
                            &mut conn,
                            consumer.name(),
                            source,
                            Partition { index: partition, count: partitions },
                            position,
                            100_000,
                        )
                        .await?;
                    statuses.push(PartitionStatus {
                        subscription: consumer.name().to_owned(),
                        subscriber: consumer.subscriber.to_owned(),
                        source: source.to_owned(),
                        partition,
                        partitions,
                        owner: members.get(usize::try_from(partition).unwrap_or(0) % members.len().max(1)).copied(),
                        position,
                        head,
                        lag,
                        attempts,
                        last_error,
                        retry_at,
                        dead_letters,
                    });
                }
            }
            conn.commit().await?;
        }
        Ok(statuses)
    }

    /// Dead letters of the hosted subscriptions (all, or one), oldest first, after the
    /// `after` key (`dead_lettered_at`, `id`), at most `limit`; replayed ones only when asked.
    ///
    /// # Errors
    /// Database failures.
    pub async fn dead_letters(
        &self,
        subscription: Option<&str>,
        include_replayed: bool,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: usize,
    ) -> anyhow::Result<Vec<DeadLetter>> {
        let mut letters = Vec::new();
        for consumer in self.inner.consumers.iter().filter(|c| subscription.is_none_or(|s| s == c.name())) {
            let rows: Vec<DeadLetter> = sqlx::query_as(
                "SELECT id, subscription, partition, source, position, event_id, event_type, event_version, aggregate_key,
                        payload, metadata, occurred_at, error, attempts, dead_lettered_at, replayed_at
                   FROM dead_letters
                  WHERE subscription = $1 AND ($2 OR replayed_at IS NULL)
                    AND ($3::timestamptz IS NULL OR (dead_lettered_at, id) > ($3, $4))
                  ORDER BY dead_lettered_at, id LIMIT $5",
            )
            .bind(consumer.name())
            .bind(include_replayed)
            .bind(after.map(|a| a.0))
            .bind(after.map_or_else(Uuid::nil, |a| a.1))
            .bind(i64::try_from(limit)?)
            .fetch_all(&consumer.pool)
            .await?;
            letters.extend(rows);
        }
        letters.sort_by_key(|l| (l.dead_lettered_at, l.id));
        letters.truncate(limit);
        Ok(letters)
    }

    /// Runs a dead letter's event through its subscription's handler once more. On success
    /// the handler's effects and the `replayed_at` mark commit together; on failure nothing
    /// changes and the letter stays.
    ///
    /// # Errors
    /// [`ReplayError`].
    pub async fn replay(&self, id: Uuid) -> Result<DeadLetter, ReplayError> {
        for consumer in &self.inner.consumers {
            let mut tx = consumer.pool.begin().await.map_err(anyhow::Error::from)?;
            let letter: Option<DeadLetter> = sqlx::query_as(
                "SELECT id, subscription, partition, source, position, event_id, event_type, event_version, aggregate_key,
                        payload, metadata, occurred_at, error, attempts, dead_lettered_at, replayed_at
                   FROM dead_letters WHERE id = $1 AND subscription = $2 FOR UPDATE",
            )
            .bind(id)
            .bind(consumer.name())
            .fetch_optional(&mut *tx)
            .await
            .map_err(anyhow::Error::from)?;
            let Some(letter) = letter else { continue };
            if letter.replayed_at.is_some() {
                return Err(ReplayError::AlreadyReplayed(id));
            }
            // Hold the partition while replaying, so no event of the same key is handled at
            // the same time; the handler gets the same time limit as in a batch.
            sqlx::query("SELECT 1 FROM bus_cursors WHERE subscription = $1 AND partition = $2 FOR UPDATE")
                .bind(consumer.name())
                .bind(letter.partition)
                .execute(&mut *tx)
                .await
                .map_err(anyhow::Error::from)?;
            let timeout_ms = consumer.subscription.handler_timeout.as_millis().max(1);
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET LOCAL statement_timeout = {timeout_ms}")))
                .execute(&mut *tx)
                .await
                .map_err(anyhow::Error::from)?;
            let handler = consumer
                .subscription
                .handler(&letter.event_type)
                .ok_or_else(|| ReplayError::NoHandler(letter.subscription.clone()))?;
            let envelope = EventEnvelope {
                id: letter.event_id,
                source: letter.source.clone(),
                position: letter.position,
                event_type: letter.event_type.clone(),
                event_version: letter.event_version,
                aggregate_key: letter.aggregate_key.clone(),
                payload: letter.payload.clone(),
                metadata: serde_json::from_value::<Metadata>(letter.metadata.clone()).unwrap_or_default(),
                occurred_at: letter.occurred_at,
            };
            if let Err(error) = consumer.invoke(handler.as_ref(), &mut tx, &envelope).await {
                return Err(ReplayError::Failed(format!("{error:#}")));
            }
            let replayed: DeadLetter = sqlx::query_as(
                "UPDATE dead_letters SET replayed_at = now() WHERE id = $1
                 RETURNING id, subscription, partition, source, position, event_id, event_type, event_version, aggregate_key,
                           payload, metadata, occurred_at, error, attempts, dead_lettered_at, replayed_at",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(anyhow::Error::from)?;
            tx.commit().await.map_err(anyhow::Error::from)?;
            self.inner.gauges_stale.store(true, Ordering::SeqCst);
            tracing::info!(dead_letter = %id, subscription = consumer.name(), "dead letter replayed");
            return Ok(replayed);
        }
        Err(ReplayError::NotFound(id))
    }

    /// Moves every partition of `subscription` back (or forward) so handling resumes at
    /// `target`; events after it are delivered again. Waits for in-flight batches.
    ///
    /// # Errors
    /// [`RewindError`].
    pub async fn rewind(&self, subscription: &str, target: RewindTarget) -> Result<i64, RewindError> {
        let consumer =
            self.consumer(subscription).ok_or_else(|| RewindError::UnknownSubscription(subscription.to_owned()))?;
        let mut tx = consumer.pool.begin().await.map_err(anyhow::Error::from)?;
        sqlx::query("SELECT 1 FROM bus_cursors WHERE subscription = $1 FOR UPDATE")
            .bind(subscription)
            .execute(&mut *tx)
            .await
            .map_err(anyhow::Error::from)?;
        let source = consumer.subscription.source;
        let count = i32::from(consumer.subscription.partitions);
        let mut cursor = 0;
        for index in 0..count {
            let partition = Partition { index, count };
            let resume_at = match target {
                RewindTarget::Position(position) => position,
                RewindTarget::Time(time) => match self.inner.log.position_at(&mut tx, source, partition, time).await? {
                    Some(position) => position,
                    None => self.inner.log.head(&mut tx, source, partition).await? + 1,
                },
            };
            cursor = (resume_at - 1).max(0);
            sqlx::query(
                "UPDATE bus_cursors SET position = $3, attempts = 0, last_error = NULL, retry_at = NULL, updated_at = now()
                  WHERE subscription = $1 AND partition = $2",
            )
            .bind(subscription)
            .bind(index)
            .bind(cursor)
            .execute(&mut *tx)
            .await
            .map_err(anyhow::Error::from)?;
        }
        // The partitions' owners may be other replicas, idle until woken: wake every reader
        // of the source, in every process, once the rewind commits.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(super::sequencer::SEQUENCED_CHANNEL)
            .bind(source)
            .execute(&mut *tx)
            .await
            .map_err(anyhow::Error::from)?;
        tx.commit().await.map_err(anyhow::Error::from)?;
        tracing::warn!(subscription, cursor, "subscription rewound");
        self.inner.wakeups.everything();
        Ok(cursor)
    }

    /// Deletes sequenced events older than the retention window from every hosted outbox,
    /// always keeping the newest (it carries the head position), and the modules' expired
    /// idempotency records. Unsequenced rows stay. A module another process is sweeping right
    /// now is skipped (a transaction-scoped advisory lock per module).
    ///
    /// # Errors
    /// Database failures.
    pub async fn sweep_retention(&self) -> anyhow::Result<u64> {
        let mut deleted = 0;
        for (module, _) in &self.inner.publishers {
            deleted += self.sweep_retention_of(module).await?;
        }
        Ok(deleted)
    }

    /// [`Bus::sweep_retention`] for one hosted module; returns the events deleted.
    ///
    /// # Errors
    /// A module not hosted here, or database failures.
    pub async fn sweep_retention_of(&self, module: &str) -> anyhow::Result<u64> {
        let pool = self
            .inner
            .publishers
            .iter()
            .find(|(name, _)| *name == module)
            .map(|(_, pool)| pool)
            .with_context(|| format!("module `{module}` is not hosted here"))?;
        let mut tx = pool.begin().await?;
        let mine: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_xact_lock(hashtextextended('bulkhead.retention.' || current_schema(), 0))",
        )
        .fetch_one(&mut *tx)
        .await?;
        if !mine {
            return Ok(0);
        }
        let done = sqlx::query(
            "DELETE FROM outbox
              WHERE position IS NOT NULL AND sequenced_at < now() - $1::interval
                AND position < (SELECT max(position) FROM outbox)
                AND position <= coalesce((SELECT min(position) FROM bus_relay), position)",
        )
        .bind(self.inner.config.retention)
        .execute(&mut *tx)
        .await
        .with_context(|| format!("sweeping the outbox of {module}"))?;
        sqlx::query("DELETE FROM idempotency_keys WHERE expires_at < now()").execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// The modules whose outboxes this bus sequences and sweeps.
    pub fn publishers(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.inner.publishers.iter().map(|(module, _)| *module)
    }

    pub(crate) fn config(&self) -> &BusConfig {
        &self.inner.config
    }

    async fn refresh_gauges_periodically(&self, cancel: CancellationToken) {
        // The sources' wake-ups and the partitions owned: while neither changes and the last
        // read found every partition caught up, the gauges cannot have moved, so the read is
        // skipped (it was most of what an idle process asked of PostgreSQL). After
        // `GAUGES_SKIPPED_AT_MOST` skipped rounds one reads anyway, for what no wake-up
        // announces (a dead letter replayed by another process).
        let mut sources: Vec<&'static str> = self.inner.consumers.iter().map(|c| c.subscription.source).collect();
        sources.sort_unstable();
        sources.dedup();
        let mut news: Vec<_> = sources.iter().map(|source| self.inner.log.wakeups(source)).collect();
        let mut owned: Vec<_> = self.inner.consumers.iter().map(|c| c.owned.subscribe()).collect();
        let mut caught_up = false;
        let mut skipped = 0_u32;
        loop {
            let changed = news.iter().any(|n| n.has_changed().unwrap_or(true))
                || owned.iter().any(|o| o.has_changed().unwrap_or(true))
                || self.inner.gauges_stale.swap(false, Ordering::SeqCst);
            if caught_up && !changed && skipped < GAUGES_SKIPPED_AT_MOST && self.inner.log.pushes_wakeups() {
                skipped += 1;
            } else {
                skipped = 0;
                news.iter_mut().for_each(|n| {
                    n.borrow_and_update();
                });
                owned.iter_mut().for_each(|o| {
                    o.borrow_and_update();
                });
                caught_up = match self.status().await {
                    Ok(statuses) => {
                        let me = self.member();
                        let caught_up = statuses.iter().all(|s| s.lag == 0 && s.attempts == 0);
                        for status in statuses {
                            let owned = status.owner == Some(me);
                            self.inner.metrics.lag(&status.subscription, status.partition, owned.then_some(status.lag));
                            self.inner.metrics.dead_letters_waiting(&status.subscription, status.dead_letters);
                        }
                        caught_up
                    }
                    Err(error) => {
                        tracing::debug!("refreshing bus gauges failed: {error:#}");
                        false
                    }
                };
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(self.inner.config.gauges_every) => {}
            }
        }
    }
}

/// Rounds of the gauges that may be skipped in a row while nothing changes: every fourth
/// round reads, about once a minute at the default 15 s.
const GAUGES_SKIPPED_AT_MOST: u32 = 3;

/// Whether preparing a subscription failed because its source's outbox is missing or not yet
/// readable by this module's role, which another process fixes when it starts.
fn source_not_ready(error: &anyhow::Error) -> bool {
    const UNDEFINED_TABLE: &str = "42P01";
    const INVALID_SCHEMA: &str = "3F000";
    if error.chain().any(|cause| cause.is::<super::transport::SourceNotReady>()) {
        return true;
    }
    error.chain().filter_map(|cause| cause.downcast_ref::<sqlx::Error>()).any(|e| {
        [UNDEFINED_TABLE, INVALID_SCHEMA, crate::db::INSUFFICIENT_PRIVILEGE]
            .iter()
            .any(|code| crate::db::has_sqlstate(e, code))
    })
}

/// Keeps this process in the consumer groups of one module's subscriptions (those started)
/// with one transaction per heartbeat, until cancelled; then leaves them, so the other members
/// take over the partitions at their next heartbeat.
async fn run_memberships(group: Vec<Arc<Consumer>>, every: Duration, cancel: CancellationToken) {
    let Some(pool) = group.first().map(|consumer| consumer.pool.clone()) else { return };
    let subscriber = group[0].subscriber;
    loop {
        let started: Vec<&Arc<Consumer>> = group.iter().filter(|c| c.started.load(Ordering::SeqCst)).collect();
        if !started.is_empty() {
            let renewed = async {
                let mut tx = pool.begin().await?;
                let mut memberships = Vec::with_capacity(started.len());
                for consumer in &started {
                    memberships.push(consumer.renew(&mut tx).await?);
                }
                tx.commit().await?;
                anyhow::Ok(memberships)
            };
            match renewed.await {
                Ok(memberships) => {
                    for (consumer, membership) in started.iter().zip(memberships) {
                        consumer.apply(membership);
                    }
                }
                Err(error) => tracing::warn!(subscriber, "consumer group heartbeat failed: {error:#}"),
            }
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
    }
    let names: Vec<&str> = group.iter().map(|c| c.name()).collect();
    let left = sqlx::query("DELETE FROM bus_members WHERE subscription = ANY($1) AND member = $2")
        .bind(&names)
        .bind(group[0].member)
        .execute(&pool)
        .await;
    if let Err(error) = left {
        tracing::warn!(subscriber, "leaving the consumer groups failed: {error}");
    }
}
