//! When a queue's worker should look for jobs. One listening connection per process hears
//! apalis' insert trigger on `apalis::job::insert` (jobs due now, with their queue) and
//! `enqueue`'s own `bulkhead::job::due` (jobs due later, with their time), and wakes that
//! queue's worker: at once, or at the job's time (apalis' own `Pubsub` held a connection per
//! queue and heard only jobs due now).
//!
//! Each wake-up also counts as news of the queue, which the queue's storage compares around
//! each fetch (see `storage`): a wake-up taken while a fetch that could not see its job was
//! running makes that fetch run again (ADR 0024).
//!
//! While the connection is up, workers poll only as a safety net ([`SafetyNet`]); while it is
//! down they poll at the fast pace, and everything wakes when it is back.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use apalis_core::backend::ext::poll_strategy::{PollSnapshot, PollStrategy};
use chrono::{DateTime, Utc};
use futures::Stream;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// apalis' trigger announces jobs inserted due now here, as JSON with `job_type`.
const INSERT_CHANNEL: &str = "apalis::job::insert";
/// `enqueue` announces jobs due later here, as JSON with `job_type` and `run_at` (seconds).
pub(crate) const DUE_CHANNEL: &str = "bulkhead::job::due";
/// Due times kept per process; beyond this, the safety net finds the rest.
const MAX_DUE_TIMES: usize = 10_000;
/// A due job is looked for this long after its time, so the database's clock has passed it
/// too (workers fetch by that clock).
const DUE_GRACE: Duration = Duration::from_millis(100);

/// The wake-ups of one process's queues.
#[derive(Debug, Clone)]
pub(crate) struct JobSignals {
    queues: Arc<BTreeMap<&'static str, watch::Sender<u64>>>,
    listening: Arc<AtomicBool>,
}

impl JobSignals {
    pub(crate) fn new(queues: &[&'static str]) -> Self {
        Self {
            queues: Arc::new(queues.iter().map(|queue| (*queue, watch::channel(0).0)).collect()),
            listening: Arc::new(AtomicBool::new(false)),
        }
    }

    /// How many wake-ups `queue` has had: a fetch that saw it change while it ran may have
    /// begun before the job it was woken for was committed.
    pub(crate) fn news(&self, queue: &str) -> u64 {
        self.queues.get(queue).map_or(0, |sender| *sender.borrow())
    }

    /// Whether notifications arrive, so that polling is only a safety net.
    pub(crate) fn is_listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }

    /// A stream that yields whenever `queue`'s worker should fetch (for apalis'
    /// `poll_with_stream`). Its first item comes at once: a (re)started worker looks first.
    pub(crate) fn stream(&self, queue: &str) -> Pin<Box<dyn Stream<Item = ()> + Send>> {
        let Some(sender) = self.queues.get(queue) else {
            return Box::pin(futures::stream::pending());
        };
        let mut receiver = sender.subscribe();
        receiver.mark_changed();
        Box::pin(futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.changed().await.ok()?;
            Some(((), receiver))
        }))
    }

    pub(crate) fn wake(&self, queue: &str) {
        if let Some(sender) = self.queues.get(queue) {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn wake_all(&self) {
        for sender in self.queues.values() {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Listens until cancelled, reconnecting with backoff when the connection drops (the
    /// workers' polls carry on meanwhile).
    pub(crate) async fn run(self, pool: PgPool, cancel: CancellationToken) {
        let (due, due_times) = mpsc::unbounded_channel();
        let timers = tokio::spawn(self.clone().wake_when_due(due_times, cancel.clone()));
        let mut backoff = Duration::from_millis(100);
        loop {
            let (outcome, listened) = tokio::select! {
                () = cancel.cancelled() => break,
                outcome = self.listen(&pool, &due) => outcome,
            };
            if listened {
                backoff = Duration::from_millis(100);
            }
            // Back to the fast poll; each worker looks once now, and then at that pace.
            self.listening.store(false, Ordering::SeqCst);
            self.wake_all();
            tracing::warn!("job notifications lost, polling until they are back: {outcome:#}");
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
        timers.await.ok();
    }

    /// Wakes each queue when a job it was told of falls due. Only the earliest time per
    /// queue and second is kept, and at most [`MAX_DUE_TIMES`]; the safety net covers the rest.
    async fn wake_when_due(
        self,
        mut due_times: mpsc::UnboundedReceiver<(&'static str, DateTime<Utc>)>,
        cancel: CancellationToken,
    ) {
        let mut pending: BTreeSet<(DateTime<Utc>, &'static str)> = BTreeSet::new();
        loop {
            let next = pending.first().map(|(at, _)| (*at - Utc::now()).to_std().unwrap_or_default() + DUE_GRACE);
            tokio::select! {
                () = cancel.cancelled() => return,
                due = due_times.recv() => match due {
                    Some(due) if pending.len() < MAX_DUE_TIMES => { pending.insert((due.1, due.0)); }
                    Some(_) => {}
                    None => return,
                },
                () = sleep_or_forever(next) => {
                    let now = Utc::now();
                    while let Some((at, queue)) = pending.first().copied() {
                        if at > now {
                            break;
                        }
                        pending.pop_first();
                        self.wake(queue);
                    }
                }
            }
        }
    }

    /// Listens until the connection fails; returns why, and whether it got as far as listening.
    async fn listen(
        &self,
        pool: &PgPool,
        due: &mpsc::UnboundedSender<(&'static str, DateTime<Utc>)>,
    ) -> (anyhow::Error, bool) {
        // A connection of its own, not one of the pool's: held for as long as it listens, it
        // would leave the workers one fewer, and wait behind them to be had.
        let own = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with((*pool.connect_options()).clone().application_name("bulkhead:jobs-listen"));
        let mut listener = match PgListener::connect_with(&own).await {
            Ok(listener) => listener,
            Err(error) => return (error.into(), false),
        };
        if let Err(error) = listener.listen_all([INSERT_CHANNEL, DUE_CHANNEL]).await {
            return (error.into(), false);
        }
        // Jobs due later that were announced before LISTEN took effect are timed from the
        // table instead (once per connection).
        let queues: Vec<&str> = self.queues.keys().copied().collect();
        let due_later = sqlx::query_as::<_, (String, i64)>(
            "SELECT DISTINCT job_type, extract(epoch FROM run_at)::bigint AS at FROM apalis.jobs \
             WHERE job_type = ANY($1) AND status = 'Pending' AND run_at > now() ORDER BY at LIMIT $2",
        )
        .bind(&queues)
        .bind(i64::try_from(MAX_DUE_TIMES).unwrap_or(i64::MAX))
        .fetch_all(&mut listener)
        .await;
        match due_later {
            Ok(due_later) => {
                for (queue, at) in due_later {
                    self.time(&queue, at, due);
                }
            }
            Err(error) => return (error.into(), false),
        }
        // Anything enqueued before LISTEN took effect is fetched now; from here on, polling
        // is a safety net.
        self.listening.store(true, Ordering::SeqCst);
        self.wake_all();
        loop {
            // `try_recv` ends with `None` when the connection drops (`recv` would reconnect
            // by itself, hiding the gap).
            match listener.try_recv().await {
                Ok(Some(notification)) if notification.channel() == DUE_CHANNEL => {
                    self.schedule(notification.payload(), due);
                }
                Ok(Some(notification)) => self.dispatch(notification.payload()),
                Ok(None) => return (anyhow::anyhow!("the job listener's connection closed"), true),
                Err(error) => return (error.into(), true),
            }
        }
    }

    /// A job due later: its queue is woken at its time.
    fn schedule(&self, payload: &str, due: &mpsc::UnboundedSender<(&'static str, DateTime<Utc>)>) {
        #[derive(serde::Deserialize)]
        struct Due {
            job_type: String,
            run_at: i64,
        }
        if let Ok(job) = serde_json::from_str::<Due>(payload) {
            self.time(&job.job_type, job.run_at, due);
        }
    }

    fn time(&self, queue: &str, at: i64, due: &mpsc::UnboundedSender<(&'static str, DateTime<Utc>)>) {
        if let (Some((queue, _)), Some(at)) = (self.queues.get_key_value(queue), DateTime::from_timestamp(at, 0)) {
            due.send((queue, at)).ok();
        }
    }

    fn dispatch(&self, payload: &str) {
        #[derive(serde::Deserialize)]
        struct Inserted {
            job_type: String,
        }
        match serde_json::from_str::<Inserted>(payload) {
            Ok(inserted) => self.wake(&inserted.job_type),
            Err(_) => self.wake_all(),
        }
    }
}

async fn sleep_or_forever(wait: Option<Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}

/// A worker's safety-net timer: news of its queue every `listening_interval` (spread by ±25%, so workers do not look
/// together) while notifications arrive, every `interval` while they do not. A change of
/// state wakes every worker (`JobSignals::run`), which re-arms this timer.
pub(crate) struct SafetyNet {
    signals: JobSignals,
    queue: &'static str,
    interval: Duration,
    listening_interval: Duration,
    timer: Option<(bool, Pin<Box<tokio::time::Sleep>>)>,
}

impl SafetyNet {
    pub(crate) fn new(
        signals: JobSignals,
        queue: &'static str,
        interval: Duration,
        listening_interval: Duration,
    ) -> Self {
        Self { signals, queue, interval, listening_interval, timer: None }
    }

    fn next_wait(&self, listening: bool) -> Duration {
        if listening { self.listening_interval.mul_f64(0.75 + rand::random::<f64>() / 2.0) } else { self.interval }
    }
}

impl PollStrategy for SafetyNet {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        let listening = self.signals.is_listening();
        if self.timer.as_ref().is_none_or(|(armed, _)| *armed != listening) {
            let wait = self.next_wait(listening);
            self.timer = Some((listening, Box::pin(tokio::time::sleep(wait))));
        }
        let Some((_, timer)) = self.timer.as_mut() else { return Poll::Pending };
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                let wait = self.next_wait(listening);
                self.timer = Some((listening, Box::pin(tokio::time::sleep(wait))));
                // Polled once so that it wakes this worker in turn.
                if let Some((_, timer)) = self.timer.as_mut() {
                    let _ = timer.as_mut().poll(cx);
                }
                // News like any other, so the storage's next fetch looks (see `storage`).
                self.signals.wake(self.queue);
                Poll::Ready(Some(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
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
        signals.dispatch(r#"{"job_type":"orders.timeout","id":"x","run_at":"2026-01-01T00:00:00Z"}"#);
        assert_eq!(tokio::time::timeout(Duration::from_secs(1), orders.next()).await.ok().flatten(), Some(()));
        assert!(tokio::time::timeout(Duration::from_millis(50), payments.next()).await.is_err());
        // A payload it cannot read wakes everyone.
        signals.dispatch("not json");
        assert_eq!(tokio::time::timeout(Duration::from_secs(1), payments.next()).await.ok().flatten(), Some(()));
    }
}
