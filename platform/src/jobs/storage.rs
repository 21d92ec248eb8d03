//! A queue's storage: apalis-postgres' storage, rebuilt from its public queries with two
//! changes to its fetch, both keyed on the queue's count of news (`JobSignals::news`).
//!
//! - **It looks again if news came while it looked.** apalis fetches whenever its worker is
//!   polled with nothing buffered, and a wake-up is taken when the worker is next polled,
//!   which can be in the middle of a fetch. If that fetch began before the job it was woken
//!   for was committed, it comes back empty, and apalis waits for the next wake-up (ADR
//!   0023). Only the fetch can tell whether it began after the news, so the check is here
//!   (ADR 0024): the count is read before each fetch, and if it moved while a fetch found
//!   nothing, the fetch runs again.
//! - **It does not look again without news.** apalis also fetches whenever its worker is
//!   polled for any other reason: a heartbeat, a running job's I/O. After a fetch that found
//!   nothing, the next one goes to the database only once the count has moved (a wake-up, a
//!   job falling due, the safety-net timer, jobs of a dead worker re-enqueued by this
//!   process's heartbeat). A batch smaller than the fetch's limit counts as finding the rest
//!   empty; a full batch is followed by a fetch that looks.
//!
//! And one change to how jobs are claimed: the fetch marks its batch running in its own
//! transaction, where apalis spends a transaction per job on a lock event when the job
//! starts (ADR 0027). Queued and running jobs are recovered alike (a dead worker's by the
//! heartbeat, a stopping worker's buffer by `reenqueue_abandoned`), so nothing is lost.
//!
//! Everything else is apalis-postgres' `SqlxPersistence` and `PostgresStorage` as of 1.0:
//! the same queries, transactions and acknowledgements. Heartbeats are noted here and
//! written for the whole process at once (`liveness`).

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use apalis_codec::json::JsonCodec;
use apalis_core::backend::finalize::Durable;
use apalis_core::backend::persistence::{Persisted, Persistence, TaskEvent, TaskPersistLayer};
use apalis_core::backend::{Backend, BackendConfig, WireFormatBackend};
use apalis_core::worker::context::WorkerContext;
use apalis_postgres::{Config, Error, PgTask, queries};
use serde_json::Value;
use sqlx::PgPool;
use ulid::Ulid;

use super::liveness::WorkerLiveness;
use super::signals::JobSignals;

/// The storage of one queue, for one worker.
pub(crate) struct QueueStorage {
    persisted: Persisted<QueuePersistence>,
    codec: JsonCodec,
}

impl QueueStorage {
    /// Heartbeats are noted in `liveness`, which renews the process's workers together.
    pub(crate) fn new(
        pool: PgPool,
        liveness: WorkerLiveness,
        config: Config,
        queue: &'static str,
        signals: JobSignals,
    ) -> Self {
        let found_nothing_at = Arc::new(Mutex::new(None));
        Self {
            persisted: Persisted::new(QueuePersistence { pool, liveness, config, queue, signals, found_nothing_at }),
            codec: JsonCodec::default(),
        }
    }
}

impl Clone for QueueStorage {
    fn clone(&self) -> Self {
        // A clone starts unregistered, as apalis' does: each worker (re)start registers anew.
        Self { persisted: self.persisted.clone(), codec: self.codec.clone() }
    }
}

#[derive(Clone)]
struct QueuePersistence {
    pool: PgPool,
    liveness: WorkerLiveness,
    config: Config,
    queue: &'static str,
    signals: JobSignals,
    /// The count of news when a fetch last found nothing; `None` after one that found jobs,
    /// and when the worker (re)starts. Shared: apalis runs each call on a clone.
    found_nothing_at: Arc<Mutex<Option<u64>>>,
}

impl QueuePersistence {
    fn found_nothing_at(&self) -> Option<u64> {
        self.found_nothing_at.lock().map(|at| *at).unwrap_or(None)
    }

    fn set_found_nothing_at(&self, news: Option<u64>) {
        if let Ok(mut at) = self.found_nothing_at.lock() {
            *at = news;
        }
    }
}

impl Persistence for QueuePersistence {
    type Compact = Vec<u8>;
    type Response = Value;
    type Error = Error;

    async fn register(&mut self, worker: &WorkerContext) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        let dead_for = self.config.orphaned_duration().as_secs();
        let orphans = queries::reenqueue_orphaned(&mut *tx, self.queue, dead_for).await?;
        register_worker(&mut tx, self.queue, worker).await?;
        tx.commit().await?;
        // A (re)started worker looks first, whatever it heard before.
        self.set_found_nothing_at(None);
        if orphans > 0 {
            tracing::debug!(queue = self.queue, orphans, "jobs of a dead worker re-enqueued");
        }
        Ok(())
    }

    async fn heartbeat(&mut self, worker: &WorkerContext) -> Result<(), Error> {
        // The process's round renews it, and re-enqueues dead workers' jobs (`liveness`).
        self.liveness.beat(self.queue, worker.name());
        Ok(())
    }

    async fn fetch_next(&mut self, worker: &WorkerContext) -> Result<Vec<PgTask>, Error> {
        // Read before the fetch's snapshot: news counted later may be of a job it misses.
        let mut news = self.signals.news(self.queue);
        if self.found_nothing_at() == Some(news) {
            return Ok(Vec::new());
        }
        loop {
            let mut tx = self.pool.begin().await?;
            let tasks = queries::fetch_next(&mut *tx, &self.config, worker).await?;
            if !tasks.is_empty() {
                // Claimed as running here, in the fetch's transaction, instead of by a
                // transaction of its own per job when it starts (`lock_tasks` is off). The
                // batch is no larger than the worker's concurrency, so every job fetched
                // starts at once.
                let ids: Vec<String> =
                    tasks.iter().filter_map(|task| task.task_id().map(ToString::to_string)).collect();
                queries::lock_tasks(&mut *tx, &ids, worker.name()).await?;
            }
            tx.commit().await?;
            let now = self.signals.news(self.queue);
            // A short batch took every job its snapshot saw, so, as after an empty one,
            // only news can bring more. A full batch may have left some behind.
            let short = tasks.len() < self.config.batch_size;
            if short && now == news {
                self.set_found_nothing_at(Some(news));
                return Ok(tasks);
            }
            if !tasks.is_empty() {
                self.set_found_nothing_at(None);
                return Ok(tasks);
            }
            news = now;
        }
    }

    async fn handle_events(&mut self, events: Vec<TaskEvent<Value>>, worker: &WorkerContext) -> Result<(), Error> {
        // Jobs are claimed as running when fetched, so the only events are results.
        let acks: Vec<&queries::ResultPayload> = events
            .iter()
            .filter_map(|event| if let TaskEvent::Complete(payload) = event { Some(payload) } else { None })
            .collect();
        if acks.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        queries::handle_results(&mut *tx, &acks, worker.name()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn reenqueue_abandoned(&mut self, tasks: Vec<PgTask>, worker: &WorkerContext) -> Result<u64, Error> {
        let ids: Vec<String> = tasks.iter().filter_map(|task| task.task_id().map(ToString::to_string)).collect();
        let mut tx = self.pool.begin().await?;
        let count = queries::reenqueue_abandoned(&mut *tx, self.queue, worker.name(), &ids).await?;
        if usize::try_from(count).ok() != Some(tasks.len()) {
            return Err(Error::ReenqueueMismatch {
                queued: tasks.len(),
                abandoned: usize::try_from(count).unwrap_or(0),
            });
        }
        tx.commit().await?;
        Ok(count)
    }

    async fn push_tasks(&mut self, tasks: Vec<PgTask>) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        queries::push_tasks(&mut *tx, self.queue, tasks).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// apalis-postgres' `queries/worker/register.sql` (its `register_worker` takes a timestamp
/// type it does not export).
async fn register_worker(conn: &mut sqlx::PgConnection, queue: &str, worker: &WorkerContext) -> Result<(), Error> {
    let registered = sqlx::query(
        "INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen) \
         VALUES ($1, $2, $3, $4, now()) ON CONFLICT (id) DO \
         UPDATE SET worker_type = EXCLUDED.worker_type, storage_name = EXCLUDED.storage_name, \
         layers = EXCLUDED.layers, last_seen = NOW() \
         WHERE pg_try_advisory_lock(hashtext(workers.id))",
    )
    .bind(worker.name())
    .bind(queue)
    .bind("PgStorage")
    .bind(worker.get_service())
    .execute(&mut *conn)
    .await?;
    if registered.rows_affected() == 0 {
        return Err(Error::WorkerAlreadyExists(worker.name().to_owned()));
    }
    Ok(())
}

impl Backend for QueueStorage {
    type Task = PgTask;
    type Error = Error;

    fn poll_ready(&mut self, cx: &mut Context<'_>, worker: &WorkerContext) -> Poll<Result<(), Error>> {
        let heartbeat = self.persisted.config.heartbeat_interval;
        self.persisted.poll_ready(cx, worker, heartbeat)
    }

    fn poll_next(&mut self, cx: &mut Context<'_>, worker: &WorkerContext) -> Poll<Option<Result<PgTask, Error>>> {
        self.persisted.poll_next(cx, worker)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>, worker: &WorkerContext) -> Poll<Result<(), Error>> {
        self.persisted.poll_close(cx, worker)
    }
}

impl BackendConfig for QueueStorage {
    type Args = Value;
    type Kind = Durable;
    type Id = Ulid;
    type Config = Config;
    type Layer = TaskPersistLayer<JsonCodec<Value>, Value>;

    fn config(&self) -> &Config {
        &self.persisted.config
    }

    fn middleware(&mut self, _: &mut WorkerContext) -> Self::Layer {
        let (batch, persist_results) = (self.persisted.config.batch_size, self.persisted.config.persist_results);
        // No lock event per job: `fetch_next` claims the batch as running.
        self.persisted.layer(JsonCodec::<Value>::default(), batch).persist_results(persist_results).lock_tasks(false)
    }
}

impl WireFormatBackend for QueueStorage {
    type Codec = JsonCodec;
    type Compact = Vec<u8>;

    fn codec(&self) -> &JsonCodec {
        &self.codec
    }
}
