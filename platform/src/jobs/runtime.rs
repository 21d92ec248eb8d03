//! The jobs runtime of one process: one apalis `Monitor` with a worker per queue, the ticks of
//! recurring jobs, and a graceful stop.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context;
use apalis::layers::limit::ConcurrencyLimitLayer;
use apalis::prelude::{BackendExt, Monitor, WorkerBuilder};
use chrono::Utc;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::enqueue::enqueue_payload;
use super::liveness::WorkerLiveness;
use super::metrics::JobMetrics;
use super::queue::{JobQueue, Recurring, validate_name};
use super::retention;
use super::service::{HandlerService, RetryLayer};
use super::signals::{JobSignals, SafetyNet};
use super::storage::QueueStorage;
use super::{Enqueued, Schedule};
use crate::bus::RetryPolicy;
use crate::db::migrate;
use crate::metrics::Metrics;

/// Tuning of a jobs runtime; the defaults suit production.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// How often a worker looks for jobs while job notifications are lost (the listener's
    /// connection is down).
    pub poll_interval: Duration,
    /// How often a worker looks for jobs while notifications arrive, spread by ±25%: a safety
    /// net for jobs nobody announced to this process (jobs a crashed process's worker held,
    /// once another process's heartbeat re-enqueues them; more jobs due later than it keeps
    /// times for). Jobs due now and due later are woken for (ADR 0024).
    pub listening_poll_interval: Duration,
    /// How long a stop waits for running jobs before abandoning them (they run again
    /// elsewhere once their worker is presumed dead).
    pub shutdown_timeout: Duration,
    /// How often a worker proves it is alive.
    pub heartbeat: Duration,
    /// Heartbeats a worker may miss before its jobs are handed to others.
    pub missed_heartbeats: usize,
    /// Finished jobs (done, killed, failed for good) are deleted once this old.
    pub retention: Duration,
    /// How often that clean-up runs (once across all processes).
    pub retention_every: Duration,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            listening_poll_interval: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            missed_heartbeats: 6,
            retention: Duration::from_secs(7 * 24 * 3600),
            retention_every: Duration::from_secs(3600),
        }
    }
}

/// Restarts of a worker that lost its storage are spaced like retries, up to this.
const RESTART_BACKOFF: RetryPolicy =
    RetryPolicy { max_attempts: u32::MAX, base_delay: Duration::from_secs(1), max_delay: Duration::from_secs(30) };

/// The jobs of the queues this process runs. Built from the jobs pool (role
/// `bulkhead_jobs`), the queues of every hosted module and the platform's own.
pub struct JobsRuntime {
    pool: PgPool,
    instance: String,
    config: JobsConfig,
    metrics: JobMetrics,
    queues: Vec<JobQueue>,
}

impl std::fmt::Debug for JobsRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.queues.iter().map(JobQueue::name).collect();
        f.debug_struct("JobsRuntime").field("instance", &self.instance).field("queues", &names).finish_non_exhaustive()
    }
}

impl JobsRuntime {
    /// A runtime on `pool` (the jobs pool), its metrics registered on `metrics`. Its instance
    /// is `bulkhead-<random>` unless [`JobsRuntime::instance`] names it.
    pub fn new(pool: PgPool, metrics: &Metrics) -> Self {
        Self {
            pool,
            instance: with_random_suffix("bulkhead"),
            config: JobsConfig::default(),
            metrics: JobMetrics::register(metrics),
            queues: Vec::new(),
        }
    }

    /// Names this process's workers `<queue>@<name>-<random>#<restarts>`: the random part
    /// makes each process (and each restart of a worker) a new worker to apalis, which
    /// refuses a name it believes is still alive.
    #[must_use]
    pub fn instance(mut self, name: &str) -> Self {
        self.instance = with_random_suffix(name);
        self
    }

    #[must_use]
    pub fn config(mut self, config: JobsConfig) -> Self {
        self.config = config;
        self
    }

    #[must_use]
    pub fn queue(mut self, queue: JobQueue) -> Self {
        self.queues.push(queue);
        self
    }

    #[must_use]
    pub fn queues(mut self, queues: impl IntoIterator<Item = JobQueue>) -> Self {
        self.queues.extend(queues);
        self
    }

    /// This process's instance name, as in its workers' names.
    pub fn instance_name(&self) -> &str {
        &self.instance
    }

    /// Starts a worker per queue (plus the runtime's own clean-up queue) and the ticks of
    /// recurring jobs. Stop by cancelling `cancel`, then [`JobsHandle::join`].
    ///
    /// # Errors
    /// An invalid or duplicate queue name, or a jobs schema that is not migrated.
    pub async fn start(self, cancel: CancellationToken) -> anyhow::Result<JobsHandle> {
        let Self { pool, instance, config, metrics, mut queues } = self;
        queues.push(retention::queue(pool.clone(), &config));
        let mut names = BTreeSet::new();
        for queue in &queues {
            validate_name(queue.name)?;
            anyhow::ensure!(names.insert(queue.name), "two job queues are named `{}`", queue.name);
        }
        anyhow::ensure!(
            migrate::jobs_is_current(&pool).await.context("reading the jobs schema's migrations")?,
            "the jobs schema has pending migrations; run `bulkhead migrate up` first"
        );

        // One listening connection and one safety scan wake every queue's worker.
        let signals = JobSignals::new(&names.iter().copied().collect::<Vec<_>>());
        let signalling = tokio::spawn(signals.clone().run(pool.clone(), cancel.clone()));

        // The workers' heartbeats, one transaction per process and interval (ADR 0027). On
        // a connection of their own: sqlx hands out idle connections in turn, so on the jobs
        // pool they would keep alive every connection a burst opened. Kept across rounds,
        // since opening one costs more than the round.
        let heartbeats = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .idle_timeout(Some(config.heartbeat.saturating_mul(3)))
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with((*pool.connect_options()).clone().application_name("bulkhead:jobs-heartbeat"));
        let liveness = WorkerLiveness::default();
        let renewing = tokio::spawn(liveness.clone().run(
            heartbeats.clone(),
            names.iter().copied().collect(),
            signals.clone(),
            config.heartbeat,
            config.heartbeat.saturating_mul(u32::try_from(config.missed_heartbeats).unwrap_or(u32::MAX)),
            cancel.clone(),
        ));
        let parts =
            WorkerParts { pool: pool.clone(), liveness, signals, instance, config, metrics, stop: cancel.clone() };
        let mut monitor = Monitor::new();
        let mut tickers = JoinSet::new();
        for queue in queues {
            if let Some(recurring) = queue.recurring.clone() {
                tickers.spawn(tick(pool.clone(), queue.name, recurring, cancel.clone()));
            }
            monitor = parts.register(monitor, queue);
        }
        let WorkerParts { instance, config, metrics, .. } = parts;
        let restarted = metrics;
        let monitor = monitor.should_restart(move |worker, error| {
            if worker.is_shutting_down() {
                return false;
            }
            let queue = worker.name().split('@').next().unwrap_or_default();
            tracing::warn!(worker = worker.name(), "job worker stopped on an error; restarting it: {error}");
            restarted.restarted(queue);
            true
        });
        let stop = cancel.clone();
        let running = tokio::spawn(async move {
            if let Err(error) = monitor
                .run_with_signal(async move {
                    stop.cancelled().await;
                    Ok::<(), std::io::Error>(())
                })
                .await
            {
                tracing::error!("the jobs runtime stopped with errors: {error}");
            }
        });
        tracing::info!(%instance, "jobs runtime started");
        Ok(JobsHandle {
            running,
            tickers,
            signalling,
            renewing,
            heartbeats,
            cancel,
            shutdown_timeout: config.shutdown_timeout,
        })
    }
}

/// What every worker of a runtime is built from.
struct WorkerParts {
    pool: PgPool,
    liveness: WorkerLiveness,
    signals: JobSignals,
    instance: String,
    config: JobsConfig,
    metrics: JobMetrics,
    stop: CancellationToken,
}

impl WorkerParts {
    /// One apalis worker for `queue`, recreated (with a new name) if it stops on an error.
    fn register(&self, monitor: Monitor, queue: JobQueue) -> Monitor {
        let JobQueue { name, handler, retry, concurrency, .. } = queue;
        // Fetch no more than it can start, so idle replicas get the rest.
        let config = apalis_postgres::Config::default()
            .queue(name)
            .batch_size(concurrency)
            .heartbeat_interval(self.config.heartbeat)
            .missed_heartbeats(self.config.missed_heartbeats);
        let storage = QueueStorage::new(self.pool.clone(), self.liveness.clone(), config, name, self.signals.clone());
        let (signals, instance) = (self.signals.clone(), self.instance.clone());
        let (poll, listening_poll) = (self.config.poll_interval, self.config.listening_poll_interval);
        let (metrics, stop) = (self.metrics.clone(), self.stop.clone());
        monitor.register(move |restarts| {
            // apalis restarts at once; a database outage would make that a tight loop.
            let delay =
                if restarts == 0 { Duration::ZERO } else { RESTART_BACKOFF.delay_after(restarts_u32(restarts)) };
            // News wakes the worker at once; the storage looks again if news came while it
            // looked, so none is lost (ADR 0024). The timer is only a safety net while
            // notifications arrive.
            let backend = storage
                .clone()
                .poll_with_stream(signals.stream(name))
                .poll_with_strategy(SafetyNet::new(signals.clone(), name, poll, listening_poll))
                .before_start(move |_| async move {
                    tokio::time::sleep(delay).await;
                    Ok(())
                });
            WorkerBuilder::new(format!("{name}@{instance}#{restarts}"))
                .backend(backend)
                .layer(ConcurrencyLimitLayer::new(concurrency))
                .layer(RetryLayer { policy: retry, stop: stop.clone() })
                .build(HandlerService { queue: name, handler: handler.clone(), metrics: metrics.clone() })
        })
    }
}

fn restarts_u32(restarts: usize) -> u32 {
    u32::try_from(restarts).unwrap_or(u32::MAX)
}

fn with_random_suffix(name: &str) -> String {
    format!("{name}-{:08x}", rand::random::<u32>())
}

/// Enqueues a recurring job once per period, from every process: the idempotency key
/// `<queue>:<period start>` lets one in, whichever process comes first.
async fn tick(pool: PgPool, queue: &'static str, recurring: Recurring, stop: CancellationToken) {
    let period = i64::try_from(recurring.every.as_secs().max(1)).unwrap_or(i64::MAX);
    loop {
        let now = Utc::now();
        let start = now.timestamp() - now.timestamp().rem_euclid(period);
        let wait = match enqueue_tick(&pool, queue, &recurring, start).await {
            Ok(enqueued) => {
                tracing::debug!(queue, period_start = start, ?enqueued, "recurring job enqueued");
                // Just past the next period's start, spread a little so replicas do not collide.
                let next = chrono::DateTime::from_timestamp(start.saturating_add(period), 0).unwrap_or(now);
                (next - now).to_std().unwrap_or_default() + Duration::from_millis(rand::random::<u64>() % 1000)
            }
            Err(error) => {
                tracing::warn!(queue, "could not enqueue a recurring job; trying again soon: {error:#}");
                recurring.every.min(Duration::from_secs(10))
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

async fn enqueue_tick(pool: &PgPool, queue: &str, recurring: &Recurring, start: i64) -> anyhow::Result<Enqueued> {
    let payload = (recurring.payload)().with_context(|| format!("serialising the recurring job of {queue}"))?;
    let schedule = Schedule { idempotency_key: Some(format!("{queue}:{start}")), ..Schedule::default() };
    let mut tx = pool.begin().await?;
    let enqueued = enqueue_payload(&mut tx, queue, payload, &schedule).await?;
    tx.commit().await?;
    Ok(enqueued)
}

/// A started runtime.
#[derive(Debug)]
pub struct JobsHandle {
    running: JoinHandle<()>,
    tickers: JoinSet<()>,
    signalling: JoinHandle<()>,
    renewing: JoinHandle<()>,
    heartbeats: PgPool,
    cancel: CancellationToken,
    shutdown_timeout: Duration,
}

impl JobsHandle {
    /// Once the runtime's token is cancelled: waits for running jobs to finish and their
    /// outcomes to be recorded, up to the shutdown timeout. Jobs still running then are
    /// abandoned; they are `Running` until their worker is presumed dead, then run again.
    pub async fn join(mut self) {
        self.cancel.cancelled().await;
        while self.tickers.join_next().await.is_some() {}
        if tokio::time::timeout(self.shutdown_timeout, &mut self.running).await.is_err() {
            tracing::warn!(timeout = ?self.shutdown_timeout, "jobs still running after the shutdown timeout; abandoning them");
            self.running.abort();
        }
        self.signalling.await.ok();
        self.renewing.await.ok();
        self.heartbeats.close().await;
    }
}
