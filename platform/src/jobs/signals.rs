//! When a queue's worker should look for jobs: one hub per process instead of a `LISTEN`
//! connection per queue. Workers still poll every `poll_interval` as well (apalis can take a
//! wake-up while a fetch that began before it runs, then wait for the next one; ADR 0023).
//!
//! - **Jobs due now**: apalis' insert trigger notifies `apalis::job::insert` with the queue;
//!   one listening connection wakes that queue's worker.
//! - **Jobs due later**: [`super::enqueue`] notifies [`LATER_CHANNEL`] with the queue and the
//!   time; the hub wakes the worker then.
//! - **Everything else** (jobs left behind by a stopped or crashed process, notifications
//!   missed while the connection was down): one query for all hosted queues, when the hub
//!   (re)connects and then every second while jobs come and go, every `safety_interval`
//!   when they do not, or every `poll_interval` while notifications are lost, wakes the
//!   queues with due jobs and times the others.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::Stream;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

/// apalis' trigger announces jobs inserted due now here, as JSON with `job_type`.
const INSERT_CHANNEL: &str = "apalis::job::insert";
/// How long after the last job heard of the safety scan keeps its short pace.
const ACTIVE_FOR_MS: i64 = 30_000;
/// The safety scan's pace while jobs come and go.
const WHILE_ACTIVE: Duration = Duration::from_secs(1);
/// Jobs enqueued to run later are announced here as `<queue> <unix seconds>`.
pub(crate) const LATER_CHANNEL: &str = "bulkhead_jobs_later";

/// The wake-ups of one process's queues.
#[derive(Debug, Clone)]
pub(crate) struct JobSignals {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    queues: BTreeMap<&'static str, watch::Sender<u64>>,
    /// Queues to wake at a time (unix seconds).
    later: Mutex<BTreeMap<i64, BTreeSet<&'static str>>>,
    later_changed: Notify,
    /// Asks the safety scan to run now (the listener just connected: jobs enqueued to run
    /// later before it did were announced to nobody).
    rescan: Notify,
    listening: AtomicBool,
    /// When a job was last heard of (unix milliseconds): while jobs come and go, the safety
    /// scan runs every second.
    heard_at: AtomicI64,
}

impl JobSignals {
    pub(crate) fn new(queues: &[&'static str]) -> Self {
        let queues = queues.iter().map(|queue| (*queue, watch::channel(0).0)).collect();
        Self {
            inner: Arc::new(Inner {
                queues,
                later: Mutex::default(),
                later_changed: Notify::new(),
                rescan: Notify::new(),
                listening: AtomicBool::new(false),
                heard_at: AtomicI64::new(0),
            }),
        }
    }

    /// A stream that yields whenever `queue`'s worker should fetch (for apalis'
    /// `poll_with_stream`). Its first item comes at once: a (re)started worker looks first.
    ///
    /// apalis takes an item even while a fetch is under way (one an earlier item or a
    /// heartbeat started), and that fetch may have begun before the news: if it finds nothing,
    /// the worker waits for the next item. So news is followed by a few more items
    /// (`FOLLOW_UPS` after the last news), which outlast any fetch it met even on a loaded
    /// machine: a few more looks per burst of news, none while there is none.
    pub(crate) fn stream(&self, queue: &str) -> Pin<Box<dyn Stream<Item = ()> + Send>> {
        const FOLLOW_UPS: [Duration; 3] =
            [Duration::from_millis(100), Duration::from_millis(400), Duration::from_millis(1500)];
        let Some(sender) = self.inner.queues.get(queue) else {
            return Box::pin(futures::stream::pending());
        };
        let mut receiver = sender.subscribe();
        receiver.mark_changed();
        // The receiver, when the last news came, and how many follow-ups were sent since.
        let state: (watch::Receiver<u64>, Instant, usize) = (receiver, Instant::now(), FOLLOW_UPS.len());
        Box::pin(futures::stream::unfold(state, |(mut receiver, news_at, sent)| async move {
            let due = async {
                match FOLLOW_UPS.get(sent) {
                    Some(after) => tokio::time::sleep_until((news_at + *after).into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = receiver.changed() => {
                    changed.ok()?;
                    Some(((), (receiver, Instant::now(), 0)))
                }
                () = due => Some(((), (receiver, news_at, sent + 1))),
            }
        }))
    }

    fn wake(&self, queue: &str) {
        if let Some(sender) = self.inner.queues.get(queue) {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn wake_all(&self) {
        for sender in self.inner.queues.values() {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Wakes `queue` at `at` (apalis fetches jobs whose `run_at` has passed, in seconds).
    fn wake_at(&self, queue: &str, at: i64) {
        let Some((queue, _)) = self.inner.queues.get_key_value(queue) else { return };
        let mut later = self.inner.later.lock().unwrap_or_else(PoisonError::into_inner);
        let earliest = later.keys().next().copied();
        later.entry(at).or_default().insert(queue);
        drop(later);
        if earliest.is_none_or(|earliest| at < earliest) {
            self.inner.later_changed.notify_one();
        }
    }

    /// Runs the hub until cancelled: the listener, the timer and the safety scan.
    pub(crate) async fn run(
        self,
        pool: PgPool,
        poll_interval: Duration,
        safety_interval: Duration,
        cancel: CancellationToken,
    ) {
        let timer = self.clone().run_timer(cancel.clone());
        let scan = self.clone().run_scan(pool.clone(), poll_interval, safety_interval, cancel.clone());
        let listen = self.run_listener(pool, cancel);
        tokio::join!(timer, scan, listen);
    }

    async fn run_listener(self, pool: PgPool, cancel: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let outcome = tokio::select! {
                () = cancel.cancelled() => return,
                outcome = self.listen(&pool) => outcome,
            };
            if self.inner.listening.swap(false, Ordering::SeqCst) {
                backoff = Duration::from_millis(100);
            }
            tracing::warn!("job notifications lost, polling until they are back: {outcome:#}");
            // Catch up on what may have been missed.
            self.wake_all();
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    /// Listens until the connection fails; returns why.
    async fn listen(&self, pool: &PgPool) -> anyhow::Error {
        // A connection of its own, not one of the pool's: held for as long as it listens, it
        // would leave the workers one fewer, and wait behind them to be had.
        let own = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with((*pool.connect_options()).clone().application_name("bulkhead:jobs-listen"));
        let mut listener = match PgListener::connect_with(&own).await {
            Ok(listener) => listener,
            Err(error) => return error.into(),
        };
        if let Err(error) = listener.listen_all([INSERT_CHANNEL, LATER_CHANNEL]).await {
            return error.into();
        }
        self.inner.listening.store(true, Ordering::SeqCst);
        // Anything enqueued before LISTEN took effect is fetched now, or timed by the scan.
        self.wake_all();
        self.inner.rescan.notify_one();
        loop {
            // `try_recv` ends with `None` when the connection drops (`recv` would reconnect
            // by itself, hiding the gap from the safety scan's pace).
            match listener.try_recv().await {
                Ok(Some(notification)) => self.dispatch(notification.channel(), notification.payload()),
                Ok(None) => return anyhow::anyhow!("the job listener's connection closed"),
                Err(error) => return error.into(),
            }
        }
    }

    fn dispatch(&self, channel: &str, payload: &str) {
        self.inner.heard_at.store(Utc::now().timestamp_millis(), Ordering::Relaxed);
        match channel {
            INSERT_CHANNEL => {
                #[derive(serde::Deserialize)]
                struct Inserted {
                    job_type: String,
                }
                match serde_json::from_str::<Inserted>(payload) {
                    Ok(inserted) => self.wake(&inserted.job_type),
                    Err(_) => self.wake_all(),
                }
            }
            LATER_CHANNEL => match payload.split_once(' ').and_then(|(q, at)| Some((q, at.parse::<i64>().ok()?))) {
                Some((queue, at)) => self.wake_at(queue, at),
                None => self.wake_all(),
            },
            _ => {}
        }
    }

    /// Wakes queues when their later jobs come due.
    async fn run_timer(self, cancel: CancellationToken) {
        loop {
            let now = Utc::now().timestamp();
            let (due, next) = {
                let mut later = self.inner.later.lock().unwrap_or_else(PoisonError::into_inner);
                // apalis fetches jobs whose `run_at` is strictly before now: wake a second after.
                let rest = later.split_off(&now);
                let due: BTreeSet<&'static str> =
                    std::mem::replace(&mut *later, rest).into_values().flatten().collect();
                (due, later.keys().next().copied())
            };
            for queue in due {
                self.wake(queue);
            }
            let wait = next.map_or(Duration::from_secs(3600), |at| {
                Duration::from_millis(u64::try_from((at + 1 - now) * 1000).unwrap_or(0).max(1))
            });
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.inner.later_changed.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Looks for due jobs of every hosted queue in one query, and times the later ones.
    async fn run_scan(
        self,
        pool: PgPool,
        poll_interval: Duration,
        safety_interval: Duration,
        cancel: CancellationToken,
    ) {
        let queues: Vec<&str> = self.inner.queues.keys().copied().collect();
        loop {
            match next_runs(&pool, &queues).await {
                Ok(runs) => {
                    let now = Utc::now();
                    if runs.values().any(|at| *at < now) {
                        self.inner.heard_at.store(now.timestamp_millis(), Ordering::Relaxed);
                    }
                    for (queue, at) in runs {
                        if at < now {
                            self.wake(&queue);
                        } else {
                            self.wake_at(&queue, at.timestamp());
                        }
                    }
                }
                Err(error) => tracing::debug!("looking for due jobs failed: {error:#}"),
            }
            // Notifications can be missed in ways nothing reports (apalis takes a wake-up while
            // a fetch that began before it runs): while jobs come and go, look every second.
            let active = Utc::now().timestamp_millis() - self.inner.heard_at.load(Ordering::Relaxed) < ACTIVE_FOR_MS;
            let wait = if !self.inner.listening.load(Ordering::SeqCst) {
                poll_interval
            } else if active {
                WHILE_ACTIVE.min(safety_interval)
            } else {
                safety_interval
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.inner.rescan.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// For each queue with jobs a worker would fetch (now or later), the earliest `run_at`.
async fn next_runs(pool: &PgPool, queues: &[&str]) -> anyhow::Result<HashMap<String, DateTime<Utc>>> {
    let rows: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT job_type, min(run_at) FROM apalis.jobs
          WHERE job_type = ANY($1) AND (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts))
          GROUP BY job_type",
    )
    .bind(queues)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn a_queue_wakes_for_its_own_jobs_only() {
        let signals = JobSignals::new(&["orders.timeout", "payments.capture"]);
        let mut orders = signals.stream("orders.timeout");
        let mut payments = signals.stream("payments.capture");
        // Each stream's first item comes at once.
        assert_eq!(orders.next().await, Some(()));
        assert_eq!(payments.next().await, Some(()));
        signals.dispatch(INSERT_CHANNEL, r#"{"job_type":"orders.timeout","id":"x","run_at":"2026-01-01T00:00:00Z"}"#);
        assert_eq!(tokio::time::timeout(Duration::from_secs(1), orders.next()).await.ok().flatten(), Some(()));
        assert!(tokio::time::timeout(Duration::from_millis(50), payments.next()).await.is_err());
    }

    #[tokio::test]
    async fn news_is_followed_by_a_few_more_looks_then_none() {
        let signals = JobSignals::new(&["orders.timeout"]);
        let mut orders = signals.stream("orders.timeout");
        assert_eq!(orders.next().await, Some(()));
        // News while the fetch the first item started may still be running…
        signals.wake("orders.timeout");
        assert_eq!(orders.next().await, Some(()));
        // …is looked at again a few times, until any fetch it met is surely done, then no more.
        for _ in 0..3 {
            assert_eq!(tokio::time::timeout(Duration::from_secs(2), orders.next()).await.ok().flatten(), Some(()));
        }
        assert!(tokio::time::timeout(Duration::from_secs(2), orders.next()).await.is_err());
    }

    #[tokio::test]
    async fn a_job_due_later_wakes_its_queue_when_due() {
        let signals = JobSignals::new(&["orders.timeout"]);
        let mut orders = signals.stream("orders.timeout");
        // The first look, and its follow-ups.
        for _ in 0..4 {
            assert_eq!(orders.next().await, Some(()));
        }
        let cancel = CancellationToken::new();
        let timer = tokio::spawn(signals.clone().run_timer(cancel.clone()));
        let at = Utc::now().timestamp() + 1;
        signals.dispatch(LATER_CHANNEL, &format!("orders.timeout {at}"));
        assert!(tokio::time::timeout(Duration::from_millis(300), orders.next()).await.is_err(), "not before it is due");
        assert_eq!(tokio::time::timeout(Duration::from_secs(5), orders.next()).await.ok().flatten(), Some(()));
        cancel.cancel();
        timer.await.unwrap();
    }
}
