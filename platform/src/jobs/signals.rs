//! When a queue's worker should look for jobs at once: apalis' insert trigger notifies
//! `apalis::job::insert` with the queue of each job due now, and one listening connection per
//! process wakes that queue's worker (apalis' own `Pubsub` held a connection per queue).
//!
//! Everything else is found by each worker's poll (`JobsConfig::poll_interval`): jobs due
//! later, jobs left by a stopped or crashed process, notifications missed while the connection
//! was down, and wake-ups apalis takes while a fetch that began before them is running (it
//! then waits for the next one; ADR 0023).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// apalis' trigger announces jobs inserted due now here, as JSON with `job_type`.
const INSERT_CHANNEL: &str = "apalis::job::insert";

/// The wake-ups of one process's queues.
#[derive(Debug, Clone)]
pub(crate) struct JobSignals {
    queues: std::sync::Arc<BTreeMap<&'static str, watch::Sender<u64>>>,
}

impl JobSignals {
    pub(crate) fn new(queues: &[&'static str]) -> Self {
        Self { queues: std::sync::Arc::new(queues.iter().map(|queue| (*queue, watch::channel(0).0)).collect()) }
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

    fn wake(&self, queue: &str) {
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
        let mut backoff = Duration::from_millis(100);
        loop {
            let (outcome, listened) = tokio::select! {
                () = cancel.cancelled() => return,
                outcome = self.listen(&pool) => outcome,
            };
            if listened {
                backoff = Duration::from_millis(100);
            }
            tracing::warn!("job notifications lost, polling until they are back: {outcome:#}");
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    /// Listens until the connection fails; returns why, and whether it got as far as listening.
    async fn listen(&self, pool: &PgPool) -> (anyhow::Error, bool) {
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
        if let Err(error) = listener.listen(INSERT_CHANNEL).await {
            return (error.into(), false);
        }
        // Anything enqueued before LISTEN took effect is fetched now.
        self.wake_all();
        loop {
            // `try_recv` ends with `None` when the connection drops (`recv` would reconnect
            // by itself, hiding the gap).
            match listener.try_recv().await {
                Ok(Some(notification)) => self.dispatch(notification.payload()),
                Ok(None) => return (anyhow::anyhow!("the job listener's connection closed"), true),
                Err(error) => return (error.into(), true),
            }
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
