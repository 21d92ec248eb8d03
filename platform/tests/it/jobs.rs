//! The jobs runtime against real PostgreSQL: `alpha` enqueues in its own transactions, the
//! runtime runs the jobs on the `apalis` schema.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use platform::bus::{BusBuilder, BusConfig, RetryPolicy};
use platform::db::{self, Databases, migrate};
use platform::jobs::{
    Enqueued, Job, JobContext, JobError, JobHandler, JobQueue, JobsConfig, JobsHandle, Schedule, enqueue, failed_jobs,
};
use platform::metrics::Metrics;
use platform::testing::{self, TestDatabase, eventually};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::support::SCHEMAS;

const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ping {
    n: u32,
}

impl Job for Ping {
    const QUEUE: &'static str = "alpha.ping";
}

/// What the test handler does with a job.
#[derive(Clone, Default)]
enum Behaviour {
    #[default]
    Succeed,
    /// Fails until this attempt, which succeeds.
    SucceedOnAttempt(u32),
    /// Fails every attempt.
    Fail,
    Abort,
    /// Waits for the notification before succeeding.
    WaitFor(Arc<Notify>),
    /// Panics on the first attempt, then succeeds.
    PanicOnce,
}

#[derive(Debug, Clone)]
struct Run {
    n: u32,
    id: String,
    attempt: u32,
    at: DateTime<Utc>,
}

/// Records every run (in a list shared by the runtimes of a test) and behaves as told.
#[derive(Clone)]
struct Recorder {
    runs: Arc<Mutex<Vec<Run>>>,
    behaviour: Behaviour,
}

impl Recorder {
    fn new(behaviour: Behaviour) -> Self {
        Self { runs: Arc::default(), behaviour }
    }

    fn runs(&self) -> Vec<Run> {
        self.runs.lock().unwrap().clone()
    }

    fn count(&self, n: u32) -> usize {
        self.runs().iter().filter(|r| r.n == n).count()
    }
}

#[async_trait::async_trait]
impl JobHandler<Ping> for Recorder {
    async fn run(&self, job: Ping, ctx: JobContext) -> Result<(), JobError> {
        let run = Run { n: job.n, id: ctx.id.clone(), attempt: ctx.attempt, at: Utc::now() };
        self.runs.lock().unwrap().push(run);
        match &self.behaviour {
            Behaviour::Succeed => Ok(()),
            Behaviour::SucceedOnAttempt(attempt) if ctx.attempt >= *attempt => Ok(()),
            Behaviour::SucceedOnAttempt(_) | Behaviour::Fail => {
                Err(anyhow::anyhow!("ping {} failed", job.n).context("pinging").into())
            }
            Behaviour::Abort => Err(JobError::Abort(anyhow::anyhow!("ping {} can never work", job.n))),
            Behaviour::WaitFor(release) => {
                release.notified().await;
                Ok(())
            }
            Behaviour::PanicOnce if ctx.attempt == 1 => panic!("ping {} blew up", job.n),
            Behaviour::PanicOnce => Ok(()),
        }
    }
}

/// Quick retries, so tests that fail on purpose do not wait long.
fn quick_retry() -> RetryPolicy {
    RetryPolicy { base_delay: Duration::from_millis(200), max_delay: Duration::from_secs(1), ..RetryPolicy::default() }
}

async fn setup() -> (TestDatabase, Databases) {
    let database = TestDatabase::create(&SCHEMAS).await.unwrap();
    let databases = database.connect(&SCHEMAS).await.unwrap();
    (database, databases)
}

struct Running {
    stop: CancellationToken,
    handle: JobsHandle,
    metrics: Metrics,
}

impl Running {
    async fn start(databases: &Databases, queues: Vec<JobQueue>) -> Self {
        Self::start_with(databases, queues, |config| config).await
    }

    async fn start_with(
        databases: &Databases,
        queues: Vec<JobQueue>,
        tune: impl FnOnce(JobsConfig) -> JobsConfig,
    ) -> Self {
        let metrics = Metrics::new();
        let config = tune(JobsConfig {
            poll_interval: Duration::from_millis(100),
            shutdown_timeout: Duration::from_secs(10),
            ..JobsConfig::default()
        });
        let stop = CancellationToken::new();
        let handle = testing::jobs_runtime(databases, &metrics)
            .unwrap()
            .config(config)
            .queues(queues)
            .start(stop.clone())
            .await
            .unwrap();
        Self { stop, handle, metrics }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.handle.join().await;
    }
}

/// Enqueues `ping` in a transaction of module `alpha` that also writes to its own table, and
/// commits it.
async fn enqueue_committed(alpha: &PgPool, ping: &Ping, schedule: Schedule) -> Enqueued {
    let mut tx = alpha.begin().await.unwrap();
    sqlx::query("INSERT INTO widgets (id, name) VALUES (gen_random_uuid(), $1)")
        .bind(format!("ping {}", ping.n))
        .execute(&mut *tx)
        .await
        .unwrap();
    let enqueued = enqueue(&mut tx, ping, schedule).await.unwrap();
    tx.commit().await.unwrap();
    enqueued
}

/// (status, attempts) of every job of `queue`, oldest first.
async fn jobs_of(jobs: &PgPool, queue: &str) -> Vec<(String, i32)> {
    sqlx::query_as("SELECT status, attempts FROM apalis.jobs WHERE job_type = $1 ORDER BY run_at, id")
        .bind(queue)
        .fetch_all(jobs)
        .await
        .unwrap()
}

/// Waits until every job of `queue` reached a final status, and returns them.
async fn settled(jobs: &PgPool, queue: &str, count: usize) -> Vec<(String, i32)> {
    eventually(WAIT, || async {
        let found = jobs_of(jobs, queue).await;
        let done = found.len() == count
            && found.iter().all(|(status, _)| matches!(status.as_str(), "Done" | "Killed" | "Failed"));
        Ok(done.then_some(found))
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_job_enqueued_in_a_committed_transaction_runs_once() {
    let (_db, databases) = setup().await;
    let (alpha, jobs) = (databases.pool("alpha").unwrap(), databases.jobs_pool().unwrap());
    let recorder = Recorder::new(Behaviour::Succeed);
    let running = Running::start(&databases, vec![JobQueue::new(recorder.clone())]).await;

    assert_eq!(enqueue_committed(alpha, &Ping { n: 1 }, Schedule::default()).await, Enqueued::New);

    assert_eq!(settled(jobs, Ping::QUEUE, 1).await, [("Done".to_owned(), 1)]);
    let runs = recorder.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].n, runs[0].attempt), (1, 1));
    let id: String = sqlx::query_scalar("SELECT id FROM apalis.jobs WHERE job_type = $1")
        .bind(Ping::QUEUE)
        .fetch_one(jobs)
        .await
        .unwrap();
    assert_eq!(runs[0].id, id);
    let rendered = running.metrics.render();
    assert!(rendered.contains(r#"bulkhead_jobs_total{queue="alpha.ping",outcome="succeeded"} 1"#), "{rendered}");
    assert!(rendered.contains("bulkhead_jobs_duration_seconds_count"), "{rendered}");
    running.stop().await;
}

#[tokio::test]
async fn a_job_enqueued_in_a_rolled_back_transaction_never_runs() {
    let (_db, databases) = setup().await;
    let (alpha, jobs) = (databases.pool("alpha").unwrap(), databases.jobs_pool().unwrap());
    let recorder = Recorder::new(Behaviour::Succeed);
    let running = Running::start(&databases, vec![JobQueue::new(recorder.clone())]).await;

    let mut tx = alpha.begin().await.unwrap();
    enqueue(&mut tx, &Ping { n: 1 }, Schedule::default()).await.unwrap();
    tx.rollback().await.unwrap();
    // A job committed after it: once that one ran, the worker has had every chance.
    enqueue_committed(alpha, &Ping { n: 2 }, Schedule::default()).await;

    assert_eq!(settled(jobs, Ping::QUEUE, 1).await, [("Done".to_owned(), 1)]);
    assert_eq!(recorder.count(2), 1);
    assert_eq!(recorder.count(1), 0, "the rolled-back job ran");
    running.stop().await;
}

#[tokio::test]
async fn a_scheduled_job_waits_until_its_time() {
    let (_db, databases) = setup().await;
    let (alpha, jobs) = (databases.pool("alpha").unwrap(), databases.jobs_pool().unwrap());
    let recorder = Recorder::new(Behaviour::Succeed);
    let running = Running::start(&databases, vec![JobQueue::new(recorder.clone())]).await;

    // Not on a whole second: the time is rounded up, never down.
    let run_at = Utc::now() + chrono::Duration::milliseconds(2_500);
    let schedule = Schedule { run_at: Some(run_at), ..Schedule::default() };
    enqueue_committed(alpha, &Ping { n: 1 }, schedule).await;
    enqueue_committed(alpha, &Ping { n: 2 }, Schedule::default()).await;

    settled(jobs, Ping::QUEUE, 2).await;
    let runs = recorder.runs();
    let later = runs.iter().find(|r| r.n == 1).unwrap();
    assert!(later.at >= run_at, "ran at {}, scheduled for {run_at}", later.at);
    assert_eq!(runs.iter().map(|r| r.n).collect::<Vec<_>>(), [2, 1]);
    running.stop().await;
}

/// Polling only as a safety net: far longer than any test waits.
const NO_POLLING: Duration = Duration::from_secs(3600);

/// While the listener is connected, a worker polls every `listening_poll_interval`; these
/// tests make that an hour, so only wake-ups can run their jobs in time.
fn wake_ups_only(config: JobsConfig) -> JobsConfig {
    JobsConfig { listening_poll_interval: NO_POLLING, ..config }
}

#[tokio::test]
async fn a_job_enqueued_while_a_fetch_that_cannot_see_it_runs_is_run_at_once() {
    let (_db, databases) = setup().await;
    let (alpha, jobs) = (databases.pool("alpha").unwrap(), databases.jobs_pool().unwrap());
    // Every fetch takes a second after its snapshot, so a job committed meanwhile is news
    // the fetch cannot see (the race of ADR 0024).
    sqlx::query(
        "CREATE OR REPLACE FUNCTION apalis.get_jobs(worker_id TEXT, v_job_type TEXT, v_job_count INTEGER DEFAULT 5)
         RETURNS SETOF apalis.jobs LANGUAGE plpgsql VOLATILE AS $$
         BEGIN
             RETURN QUERY WITH jobs AS (
                 SELECT id FROM apalis.jobs
                 WHERE (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts))
                   AND run_at < now() AND job_type = v_job_type
                 ORDER BY priority DESC, run_at ASC LIMIT v_job_count FOR UPDATE SKIP LOCKED
             )
             UPDATE apalis.jobs j SET status = 'Queued', lock_by = worker_id, lock_at = now()
             FROM jobs WHERE j.id = jobs.id RETURNING j.*;
             PERFORM pg_sleep(1);
         END $$",
    )
    .execute(jobs)
    .await
    .unwrap();
    let recorder = Recorder::new(Behaviour::Succeed);
    let running = Running::start_with(&databases, vec![JobQueue::new(recorder.clone())], wake_ups_only).await;

    // The listener is connected (its last statement runs after LISTEN), and a fetch is running.
    eventually(WAIT, || async {
        let (listening, fetching): (bool, bool) = sqlx::query_as(
            "SELECT
                 bool_or(application_name = 'bulkhead:jobs-listen' AND state = 'idle' AND query LIKE '%DISTINCT job_type%'),
                 bool_or(state = 'active' AND query LIKE '%get_jobs%')
             FROM pg_stat_activity WHERE datname = current_database()",
        )
        .fetch_one(jobs)
        .await?;
        Ok((listening && fetching).then_some(()))
    })
    .await
    .unwrap();
    let enqueued_at = Utc::now();
    enqueue_committed(alpha, &Ping { n: 1 }, Schedule::now()).await;

    settled(jobs, Ping::QUEUE, 1).await;
    let ran = &recorder.runs()[0];
    assert!(
        ran.at - enqueued_at < chrono::Duration::seconds(5),
        "enqueued at {enqueued_at}, ran at {}: it waited for a poll",
        ran.at
    );
    running.stop().await;
}

#[tokio::test]
async fn jobs_due_later_run_at_their_time_without_polling() {
    let (_db, databases) = setup().await;
    let (alpha, jobs) = (databases.pool("alpha").unwrap(), databases.jobs_pool().unwrap());
    // One announced before the runtime listens (read from the table), one after.
    let before = Utc::now() + chrono::Duration::milliseconds(2_500);
    enqueue_committed(alpha, &Ping { n: 1 }, Schedule { run_at: Some(before), ..Schedule::default() }).await;
    let recorder = Recorder::new(Behaviour::Succeed);
    let running = Running::start_with(&databases, vec![JobQueue::new(recorder.clone())], wake_ups_only).await;
    let after = Utc::now() + chrono::Duration::milliseconds(3_500);
    enqueue_committed(alpha, &Ping { n: 2 }, Schedule { run_at: Some(after), ..Schedule::default() }).await;

    settled(jobs, Ping::QUEUE, 2).await;
    for (n, due) in [(1, before), (2, after)] {
        let ran = recorder.runs().into_iter().find(|r| r.n == n).unwrap();
        // Due on the next whole second; woken just after it.
        assert!(ran.at >= due, "ping {n} ran at {}, due at {due}", ran.at);
        assert!(ran.at - due < chrono::Duration::seconds(3), "ping {n} ran at {}, due at {due}", ran.at);
    }
    running.stop().await;
}

#[tokio::test]
async fn a_duplicate_idempotency_key_is_already_scheduled_and_the_transaction_still_commits() {
    let (_db, databases) = setup().await;
    let (alpha, jobs) = (databases.pool("alpha").unwrap(), databases.jobs_pool().unwrap());
    let keyed = || Schedule::default().idempotency_key("ping:1");

    let mut tx = alpha.begin().await.unwrap();
    assert_eq!(enqueue(&mut tx, &Ping { n: 1 }, keyed()).await.unwrap(), Enqueued::New);
    assert_eq!(enqueue(&mut tx, &Ping { n: 1 }, keyed()).await.unwrap(), Enqueued::AlreadyScheduled);
    // The transaction is intact: later statements run, and search_path is the module's again.
    sqlx::query("INSERT INTO widgets (id, name) VALUES (gen_random_uuid(), 'after the duplicate')")
        .execute(&mut *tx)
        .await
        .unwrap();
    let search_path: String = sqlx::query_scalar("SHOW search_path").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(search_path, "alpha");
    tx.commit().await.unwrap();

    assert_eq!(enqueue_committed(alpha, &Ping { n: 1 }, keyed()).await, Enqueued::AlreadyScheduled);
    let widgets: i64 = sqlx::query_scalar("SELECT count(*) FROM widgets").fetch_one(alpha).await.unwrap();
    assert_eq!(widgets, 2);
    assert_eq!(jobs_of(jobs, Ping::QUEUE).await.len(), 1);

    let recorder = Recorder::new(Behaviour::Succeed);
    let running = Running::start(&databases, vec![JobQueue::new(recorder.clone())]).await;
    settled(jobs, Ping::QUEUE, 1).await;
    assert_eq!(recorder.count(1), 1);
    // The key stays taken while the finished job is kept.
    assert_eq!(enqueue_committed(alpha, &Ping { n: 1 }, keyed()).await, Enqueued::AlreadyScheduled);
    running.stop().await;
}

#[tokio::test]
async fn a_handler_failing_twice_then_succeeding_runs_three_times_with_backoff() {
    let (_db, databases) = setup().await;
    let (alpha, jobs) = (databases.pool("alpha").unwrap(), databases.jobs_pool().unwrap());
    let recorder = Recorder::new(Behaviour::SucceedOnAttempt(3));
    let policy = quick_retry();
    let running = Running::start(&databases, vec![JobQueue::new(recorder.clone()).retry(policy)]).await;

    enqueue_committed(alpha, &Ping { n: 1 }, Schedule::default()).await;

    assert_eq!(settled(jobs, Ping::QUEUE, 1).await, [("Done".to_owned(), 3)]);
    let runs = recorder.runs();
    assert_eq!(runs.iter().map(|r| r.attempt).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(runs.iter().all(|r| r.id == runs[0].id), "one job, three attempts");
    // Equal jitter: a retry waits at least half its exponential delay.
    for (failed, pair) in runs.windows(2).enumerate() {
        let waited = (pair[1].at - pair[0].at).to_std().unwrap();
        let full = policy.base_delay * 2u32.pow(u32::try_from(failed).unwrap());
        assert!(waited >= full / 2, "retry {failed} came after {waited:?}");
    }
    let rendered = running.metrics.render();
    assert!(rendered.contains(r#"bulkhead_jobs_total{queue="alpha.ping",outcome="retried"} 2"#), "{rendered}");
    running.stop().await;
}

#[tokio::test]
async fn a_panicking_handler_is_a_failed_attempt_not_a_dead_worker() {
    let (_db, databases) = setup().await;
    let (alpha, jobs) = (databases.pool("alpha").unwrap(), databases.jobs_pool().unwrap());
    let recorder = Recorder::new(Behaviour::PanicOnce);
    let running = Running::start(&databases, vec![JobQueue::new(recorder.clone()).retry(quick_retry())]).await;

    enqueue_committed(alpha, &Ping { n: 1 }, Schedule::default()).await;

    assert_eq!(settled(jobs, Ping::QUEUE, 1).await, [("Done".to_owned(), 2)]);
    assert_eq!(recorder.runs().iter().map(|r| r.attempt).collect::<Vec<_>>(), [1, 2]);
    assert!(!running.metrics.render().contains("bulkhead_jobs_worker_restarts_total{"), "the worker kept running");
    running.stop().await;
}

#[tokio::test]
async fn a_job_out_of_attempts_stays_failed_and_an_aborted_one_is_killed_both_listed() {
    let (_db, databases) = setup().await;
    let (alpha, jobs) = (databases.pool("alpha").unwrap(), databases.jobs_pool().unwrap());

    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Doomed {
        n: u32,
    }
    impl Job for Doomed {
        const QUEUE: &'static str = "alpha.doomed";
    }
    #[derive(Clone)]
    struct Aborts(Recorder);
    #[async_trait::async_trait]
    impl JobHandler<Doomed> for Aborts {
        async fn run(&self, job: Doomed, ctx: JobContext) -> Result<(), JobError> {
            self.0.run(Ping { n: job.n }, ctx).await
        }
    }

    let failing = Recorder::new(Behaviour::Fail);
    let aborting = Recorder::new(Behaviour::Abort);
    let queues = vec![
        JobQueue::new(failing.clone()).retry(quick_retry()),
        JobQueue::new(Aborts(aborting.clone())).retry(quick_retry()),
    ];
    let running = Running::start(&databases, queues).await;

    enqueue_committed(alpha, &Ping { n: 1 }, Schedule::default().max_attempts(2)).await;
    let mut tx = alpha.begin().await.unwrap();
    enqueue(&mut tx, &Doomed { n: 7 }, Schedule::default()).await.unwrap();
    tx.commit().await.unwrap();

    assert_eq!(settled(jobs, Ping::QUEUE, 1).await, [("Failed".to_owned(), 2)]);
    assert_eq!(settled(jobs, Doomed::QUEUE, 1).await, [("Killed".to_owned(), 1)]);
    assert_eq!(failing.count(1), 2);
    assert_eq!(aborting.count(7), 1, "an aborted job is not retried");

    let failed = failed_jobs(jobs, None, None, 10).await.unwrap();
    let summary: Vec<(&str, &str, i32)> =
        failed.iter().map(|j| (j.queue.as_str(), j.status.as_str(), j.attempts)).collect();
    assert_eq!(summary.len(), 2);
    assert!(summary.contains(&("alpha.ping", "Failed", 2)), "{summary:?}");
    assert!(summary.contains(&("alpha.doomed", "Killed", 1)), "{summary:?}");
    let ping = failed.iter().find(|j| j.queue == "alpha.ping").unwrap();
    assert_eq!(ping.error.as_deref(), Some("pinging: ping 1 failed"));
    assert_eq!(ping.payload, serde_json::json!({ "n": 1 }));
    let doomed = failed.iter().find(|j| j.queue == "alpha.doomed").unwrap();
    assert_eq!(doomed.error.as_deref(), Some("ping 7 can never work"));
    assert_eq!(failed_jobs(jobs, Some("alpha.doomed"), None, 10).await.unwrap().len(), 1);
    let after = (failed[0].failed_at, failed[0].id.clone());
    assert_eq!(failed_jobs(jobs, None, Some(after), 10).await.unwrap().len(), 1);

    let rendered = running.metrics.render();
    assert!(rendered.contains(r#"bulkhead_jobs_total{queue="alpha.ping",outcome="failed"} 1"#), "{rendered}");
    assert!(rendered.contains(r#"bulkhead_jobs_total{queue="alpha.doomed",outcome="aborted"} 1"#), "{rendered}");
    running.stop().await;
}

#[tokio::test]
async fn two_runtimes_on_one_database_run_each_job_exactly_once() {
    let (_db, databases) = setup().await;
    let (alpha, jobs) = (databases.pool("alpha").unwrap(), databases.jobs_pool().unwrap());
    // Two handlers recording into one list, one per replica.
    let one = Recorder::new(Behaviour::Succeed);
    let first = Running::start(&databases, vec![JobQueue::new(one.clone()).concurrency(2)]).await;
    let second = Running::start(&databases, vec![JobQueue::new(one.clone()).concurrency(2)]).await;

    const JOBS: u32 = 60;
    for batch in (1..=JOBS).collect::<Vec<_>>().chunks(10) {
        let mut tx = alpha.begin().await.unwrap();
        for n in batch {
            enqueue(&mut tx, &Ping { n: *n }, Schedule::default()).await.unwrap();
        }
        tx.commit().await.unwrap();
    }

    let settled = settled(jobs, Ping::QUEUE, JOBS as usize).await;
    assert!(settled.iter().all(|(status, attempts)| status == "Done" && *attempts == 1), "{settled:?}");
    let runs = one.runs();
    assert_eq!(runs.len(), JOBS as usize, "every job once");
    for n in 1..=JOBS {
        assert_eq!(one.count(n), 1, "job {n}");
    }
    let workers: Vec<String> = sqlx::query_scalar("SELECT id FROM apalis.workers WHERE worker_type = $1 ORDER BY id")
        .bind(Ping::QUEUE)
        .fetch_all(jobs)
        .await
        .unwrap();
    assert_eq!(workers.len(), 2, "{workers:?}");
    assert!(workers.iter().all(|w| w.starts_with("alpha.ping@test-") && w.ends_with("#0")), "{workers:?}");
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn a_job_running_longer_than_the_dead_worker_window_is_not_run_again_elsewhere() {
    let (_db, databases) = setup().await;
    let (alpha, jobs) = (databases.pool("alpha").unwrap(), databases.jobs_pool().unwrap());
    let release = Arc::new(Notify::new());
    let recorder = Recorder::new(Behaviour::WaitFor(release.clone()));
    // A worker is presumed dead after 3 missed heartbeats of 200 ms. One job at a time, so a
    // worker running its job is at its limit: it must still beat (apalis beats from the
    // backend's readiness, which it polls before asking for a free slot).
    let quick =
        |config: JobsConfig| JobsConfig { heartbeat: Duration::from_millis(200), missed_heartbeats: 3, ..config };
    let queue = || vec![JobQueue::new(recorder.clone()).concurrency(1)];
    let first = Running::start_with(&databases, queue(), quick).await;
    let second = Running::start_with(&databases, queue(), quick).await;

    enqueue_committed(alpha, &Ping { n: 1 }, Schedule::default()).await;
    eventually(WAIT, || async { Ok((recorder.count(1) == 1).then_some(())) }).await.unwrap();
    // Five times the dead-worker window: the worker running the job is still renewed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(recorder.count(1), 1, "the job ran again while it was still running");
    let statuses: Vec<String> = jobs_of(jobs, Ping::QUEUE).await.into_iter().map(|(status, _)| status).collect();
    assert_eq!(statuses, ["Running"]);

    release.notify_one();
    assert_eq!(settled(jobs, Ping::QUEUE, 1).await, [("Done".to_owned(), 1)]);
    assert_eq!(recorder.count(1), 1);
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn stopping_waits_for_a_running_job_and_records_its_outcome() {
    let (_db, databases) = setup().await;
    let (alpha, jobs) = (databases.pool("alpha").unwrap(), databases.jobs_pool().unwrap());
    let release = Arc::new(Notify::new());
    let recorder = Recorder::new(Behaviour::WaitFor(release.clone()));
    let running = Running::start(&databases, vec![JobQueue::new(recorder.clone())]).await;

    enqueue_committed(alpha, &Ping { n: 1 }, Schedule::default()).await;
    eventually(WAIT, || async { Ok((recorder.count(1) == 1).then_some(())) }).await.unwrap();

    running.stop.cancel();
    let mut joined = tokio::spawn(running.handle.join());
    // The job is still waiting for its release, so the runtime cannot have stopped.
    assert!(futures::poll!(&mut joined).is_pending());
    assert!(!joined.is_finished());
    release.notify_one();
    joined.await.unwrap();

    assert_eq!(jobs_of(jobs, Ping::QUEUE).await, [("Done".to_owned(), 1)]);
    assert_eq!(recorder.count(1), 1);
}

#[tokio::test]
async fn a_worker_whose_storage_fails_restarts_under_a_new_name_and_keeps_working() {
    let (database, databases) = setup().await;
    let (alpha, jobs) = (databases.pool("alpha").unwrap(), databases.jobs_pool().unwrap());
    let recorder = Recorder::new(Behaviour::Succeed);
    let running = Running::start(&databases, vec![JobQueue::new(recorder.clone())]).await;
    enqueue_committed(alpha, &Ping { n: 1 }, Schedule::default()).await;
    settled(jobs, Ping::QUEUE, 1).await;

    // The storage fails under the worker (as in an outage): apalis ends the worker.
    let mut admin = database.admin_connection().await.unwrap();
    sqlx::query("REVOKE ALL ON apalis.jobs FROM bulkhead_jobs").execute(&mut admin).await.unwrap();
    enqueue_committed(alpha, &Ping { n: 2 }, Schedule::default()).await;
    let restarts = r#"bulkhead_jobs_worker_restarts_total{queue="alpha.ping"}"#;
    eventually(WAIT, || async { Ok(running.metrics.render().contains(restarts).then_some(())) }).await.unwrap();

    sqlx::query("GRANT ALL ON apalis.jobs TO bulkhead_jobs").execute(&mut admin).await.unwrap();
    settled(jobs, Ping::QUEUE, 2).await;
    assert_eq!((recorder.count(1), recorder.count(2)), (1, 1));
    // Each restart is a new worker to apalis, which refuses a name it believes alive.
    let workers: Vec<String> = sqlx::query_scalar("SELECT id FROM apalis.workers WHERE worker_type = $1")
        .bind(Ping::QUEUE)
        .fetch_all(jobs)
        .await
        .unwrap();
    assert!(workers.len() >= 2 && workers.iter().any(|name| name.ends_with("#0")), "{workers:?}");
    running.stop().await;
}

#[tokio::test]
async fn module_roles_may_enqueue_into_their_own_queues_only_and_the_jobs_role_sees_no_module_data() {
    let (_db, databases) = setup().await;
    let (alpha, jobs) = (databases.pool("alpha").unwrap(), databases.jobs_pool().unwrap());
    enqueue_committed(alpha, &Ping { n: 1 }, Schedule::default()).await;

    for sql in [
        "SELECT * FROM apalis.jobs",
        "UPDATE apalis.jobs SET status = 'Done'",
        "DELETE FROM apalis.jobs",
        "SELECT * FROM apalis.workers",
        "SELECT * FROM apalis.get_jobs('intruder', 'alpha.ping', 10)",
        "CREATE TABLE apalis.intruder (id int)",
        "SELECT * FROM beta.gadgets",
    ] {
        let error = sqlx::query(sql).execute(alpha).await.expect_err(sql);
        assert!(db::has_sqlstate(&error, db::INSUFFICIENT_PRIVILEGE), "{sql}: {error}");
    }

    // Only into its own queues: another module's handler must not run on alpha's payload.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Intrusion {}
    impl Job for Intrusion {
        const QUEUE: &'static str = "beta.intrusion";
    }
    let mut tx = alpha.begin().await.unwrap();
    let error = enqueue(&mut tx, &Intrusion {}, Schedule::default()).await.unwrap_err();
    assert!(format!("{error:#}").contains("row-level security"), "{error:#}");
    sqlx::query("INSERT INTO widgets (id, name) VALUES (gen_random_uuid(), 'still fine')")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(jobs_of(jobs, Intrusion::QUEUE).await.len(), 0);

    let user: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(jobs).await.unwrap();
    assert_eq!(user, db::JOBS_ROLE);
    for sql in [
        "SELECT * FROM alpha.widgets",
        "SELECT * FROM alpha.outbox",
        "INSERT INTO beta.gadgets (id, name) VALUES (gen_random_uuid(), 'x')",
    ] {
        let error = sqlx::query(sql).execute(jobs).await.expect_err(sql);
        assert!(db::has_sqlstate(&error, db::INSUFFICIENT_PRIVILEGE), "{sql}: {error}");
    }
}

#[tokio::test]
async fn the_jobs_schema_is_migrated_by_its_own_role_with_its_history_in_it() {
    let (database, databases) = setup().await;
    let jobs = databases.jobs_pool().unwrap();
    let status = migrate::jobs_status(jobs).await.unwrap();
    assert!(status.len() >= 20, "{status:?}");
    assert!(status.iter().all(|m| m.module == "jobs" && m.stream == "apalis" && m.applied_at.is_some()));
    assert!(migrate::jobs_is_current(jobs).await.unwrap());

    let mut admin = database.admin_connection().await.unwrap();
    let owners: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, pg_get_userbyid(c.relowner)::text FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'apalis' AND c.relkind = 'r' ORDER BY 1",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(
        owners,
        [("_sqlx_migrations", db::JOBS_ROLE), ("jobs", db::JOBS_ROLE), ("workers", db::JOBS_ROLE)]
            .map(|(t, o)| (t.to_owned(), o.to_owned()))
    );
    let hstore: String = sqlx::query_scalar(
        "SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'hstore'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(hstore, "apalis");

    // Migrating again (every start does) changes nothing.
    databases.migrate(&SCHEMAS).await.unwrap();
    assert!(migrate::jobs_is_current(jobs).await.unwrap());
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Noted {
    seq: i32,
}

impl platform::bus::Event for Noted {
    const TYPE: &'static str = "alpha.noted";
    const VERSION: u32 = 1;

    fn aggregate_key(&self) -> String {
        "k".to_owned()
    }
}

#[tokio::test]
async fn the_bus_retention_sweep_runs_as_a_job_once_per_period_across_replicas() {
    let (database, databases) = setup().await;
    let (alpha, jobs) = (databases.pool("alpha").unwrap(), databases.jobs_pool().unwrap());
    let mut tx = alpha.begin().await.unwrap();
    let events: Vec<Noted> = (1..=3).map(|seq| Noted { seq }).collect();
    platform::bus::append_all(&mut tx, &events, &platform::bus::Metadata::system("test")).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(platform::bus::sequencer::sequence_batch(alpha, 100).await.unwrap(), 3);
    let mut admin = database.admin_connection().await.unwrap();
    sqlx::query("UPDATE alpha.outbox SET sequenced_at = now() - interval '8 days'").execute(&mut admin).await.unwrap();

    let replica = || async {
        let bus = BusBuilder::new(BusConfig::default(), &Metrics::new()).publisher("alpha", alpha.clone()).build();
        Running::start(&databases, bus.retention_jobs()).await
    };
    let (first, second) = (replica().await, replica().await);

    eventually(WAIT, || async {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(alpha).await?;
        Ok((left == 1).then_some(()))
    })
    .await
    .unwrap();
    let sweeps = settled(jobs, "bus.retention.alpha", 1).await;
    assert_eq!(sweeps, [("Done".to_owned(), 1)], "one sweep for the period, whichever replica enqueued it");
    let key: String =
        sqlx::query_scalar("SELECT idempotency_key FROM apalis.jobs WHERE job_type = 'bus.retention.alpha'")
            .fetch_one(jobs)
            .await
            .unwrap();
    let period_start: i64 = key.strip_prefix("bus.retention.alpha:").unwrap().parse().unwrap();
    assert_eq!(period_start % 3600, 0, "periods of an hour start on the hour: {key}");
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn finished_jobs_past_the_retention_window_are_purged_and_their_keys_freed() {
    let (_db, databases) = setup().await;
    let (alpha, jobs) = (databases.pool("alpha").unwrap(), databases.jobs_pool().unwrap());
    let keyed = || Schedule::default().idempotency_key("ping:old");
    enqueue_committed(alpha, &Ping { n: 1 }, keyed()).await;
    let in_an_hour = Schedule { run_at: Some(Utc::now() + chrono::Duration::hours(1)), ..Schedule::default() };
    enqueue_committed(alpha, &Ping { n: 2 }, in_an_hour).await;
    sqlx::query(
        "UPDATE apalis.jobs SET status = 'Done', done_at = now() - interval '8 days' WHERE idempotency_key = 'ping:old'",
    )
    .execute(jobs)
    .await
    .unwrap();

    // Purged once per hour across processes; a fresh database has had no purge yet.
    let running = Running::start(&databases, Vec::new()).await;
    eventually(WAIT, || async {
        let left = jobs_of(jobs, Ping::QUEUE).await;
        Ok((left.len() == 1).then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(jobs_of(jobs, Ping::QUEUE).await, [("Pending".to_owned(), 0)], "the pending job stays");
    assert_eq!(enqueue_committed(alpha, &Ping { n: 1 }, keyed()).await, Enqueued::New, "the key is free again");
    running.stop().await;
}

mod admin_api {
    use axum::Router;
    use platform::auth::Role;
    use platform::http::HttpSettings;
    use platform::jobs::admin::{JobsAdminState, router};
    use reqwest::StatusCode;
    use serde_json::Value;

    use super::*;
    use crate::auth::{TestKey, claims, verifier_trusting};
    use crate::support::Served;

    #[tokio::test]
    async fn admins_page_through_failed_jobs_and_others_are_refused() {
        let (_db, databases) = setup().await;
        let (alpha, jobs) = (databases.pool("alpha").unwrap(), databases.jobs_pool().unwrap());
        let aborting = Recorder::new(Behaviour::Abort);
        let running = Running::start(&databases, vec![JobQueue::new(aborting.clone())]).await;
        for n in 1..=3 {
            enqueue_committed(alpha, &Ping { n }, Schedule::default()).await;
        }
        settled(jobs, Ping::QUEUE, 3).await;

        let key = TestKey::generate("k1");
        let state = JobsAdminState { pool: jobs.clone(), verifier: verifier_trusting(&key) };
        let (api, _) = router(state).split_for_parts();
        let app = Served::start(Router::new().nest("/api/v1", api), HttpSettings::default()).await;
        let get = |path: &str, token: Option<String>| {
            let request = app.client.get(app.url(path));
            match token {
                Some(token) => request.bearer_auth(token).send(),
                None => request.send(),
            }
        };

        let customer = key.sign(&claims("customer-1", &[Role::Customer]));
        assert_eq!(get("/api/v1/admin/jobs/failed", None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
        assert_eq!(get("/api/v1/admin/jobs/failed", Some(customer)).await.unwrap().status(), StatusCode::FORBIDDEN);

        let admin = key.sign(&claims("admin-1", &[Role::Admin]));
        let response = get("/api/v1/admin/jobs/failed?limit=2", Some(admin.clone())).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let page: Value = response.json().await.unwrap();
        let first: Vec<&Value> = page["data"].as_array().unwrap().iter().collect();
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|job| job["status"] == "Killed" && job["queue"] == "alpha.ping"), "{page}");
        assert!(first[0]["error"].as_str().unwrap().contains("can never work"), "{page}");
        let cursor = page["meta"]["next_cursor"].as_str().unwrap();
        let rest: Value = get(&format!("/api/v1/admin/jobs/failed?limit=2&after={cursor}"), Some(admin.clone()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(rest["data"].as_array().unwrap().len(), 1);
        assert!(rest["meta"]["next_cursor"].is_null());
        let mut seen: Vec<u64> = first
            .iter()
            .copied()
            .chain(rest["data"].as_array().unwrap())
            .map(|j| j["payload"]["n"].as_u64().unwrap())
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, [1, 2, 3]);

        let other: Value = get("/api/v1/admin/jobs/failed?queue=orders.payment_timeout", Some(admin.clone()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(other["data"], serde_json::json!([]));
        let bad = get("/api/v1/admin/jobs/failed?after=nonsense", Some(admin)).await.unwrap();
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        running.stop().await;
    }
}
