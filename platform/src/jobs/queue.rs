//! A queue as a module hands it to the runtime: its name, its handler with the job type
//! erased, how failures are retried, how many jobs run at once, and an optional schedule.

use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;

use super::{Job, JobContext, JobError, JobHandler};
use crate::bus::RetryPolicy;

/// Jobs of one queue running at once in one process, unless the queue says otherwise.
const DEFAULT_CONCURRENCY: usize = 4;

/// A queue and the handler of its jobs: what `Module::jobs` returns and the app registers.
pub struct JobQueue {
    pub(crate) name: &'static str,
    pub(crate) handler: Arc<dyn ErasedHandler>,
    pub(crate) retry: RetryPolicy,
    pub(crate) concurrency: usize,
    pub(crate) recurring: Option<Recurring>,
}

impl std::fmt::Debug for JobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobQueue")
            .field("name", &self.name)
            .field("retry", &self.retry)
            .field("concurrency", &self.concurrency)
            .field("every", &self.recurring.as_ref().map(|r| r.every))
            .finish_non_exhaustive()
    }
}

/// A job every process enqueues once per period; the idempotency key `<queue>:<period
/// start>` lets exactly one of them in.
#[derive(Clone)]
pub(crate) struct Recurring {
    pub(crate) every: Duration,
    pub(crate) payload: Arc<dyn Fn() -> serde_json::Result<Vec<u8>> + Send + Sync>,
}

impl JobQueue {
    /// The queue `J::QUEUE`, its jobs run by `handler`.
    pub fn new<J: Job>(handler: impl JobHandler<J>) -> Self {
        Self::erased(J::QUEUE, Arc::new(Typed { handler, _job: PhantomData::<fn() -> J> }))
    }

    /// A queue whose `job` also runs on a schedule: once per `every` (periods aligned to the
    /// Unix epoch, in UTC), whichever process enqueues it first. Missed periods (every
    /// process down) are not made up.
    pub fn recurring<J: Job>(handler: impl JobHandler<J>, every: Duration, job: J) -> Self {
        Self::new(handler).every(every, move || serde_json::to_vec(&job))
    }

    /// How failed attempts are spaced: `policy`'s exponential backoff with jitter. How many
    /// attempts a job gets is the job's own (`Schedule::max_attempts`, set when it was
    /// enqueued), so `policy.max_attempts` is not used.
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Jobs of this queue running at once in one process (at least 1; default 4).
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub(crate) fn erased(name: &'static str, handler: Arc<dyn ErasedHandler>) -> Self {
        Self { name, handler, retry: RetryPolicy::default(), concurrency: DEFAULT_CONCURRENCY, recurring: None }
    }

    pub(crate) fn every(
        mut self,
        every: Duration,
        payload: impl Fn() -> serde_json::Result<Vec<u8>> + Send + Sync + 'static,
    ) -> Self {
        self.recurring = Some(Recurring { every, payload: Arc::new(payload) });
        self
    }
}

/// A handler with its job type erased, so one runtime holds every queue. The payload is
/// decoded here rather than by apalis: a payload that no longer fits its type fails that
/// job (it is aborted), where a decoding error inside apalis would stop the whole worker.
#[async_trait]
pub(crate) trait ErasedHandler: Send + Sync {
    async fn run(&self, payload: serde_json::Value, ctx: JobContext) -> Result<(), JobError>;
}

struct Typed<J, H> {
    handler: H,
    _job: PhantomData<fn() -> J>,
}

#[async_trait]
impl<J: Job, H: JobHandler<J>> ErasedHandler for Typed<J, H> {
    async fn run(&self, payload: serde_json::Value, ctx: JobContext) -> Result<(), JobError> {
        let job = serde_json::from_value::<J>(payload).map_err(|error| {
            JobError::Abort(anyhow::Error::new(error).context(format!("the payload is not a {} job", J::QUEUE)))
        })?;
        self.handler.run(job, ctx).await
    }
}

/// A queue name built at run time (one per hosted module, e.g. `bus.retention.orders`) made
/// `'static` like the names of `Job::QUEUE`. Interned, so building runtimes over and over
/// (tests) keeps one copy of each.
pub(crate) fn static_name(name: String) -> &'static str {
    static NAMES: OnceLock<Mutex<BTreeSet<&'static str>>> = OnceLock::new();
    let Ok(mut names) = NAMES.get_or_init(Default::default).lock() else {
        return Box::leak(name.into_boxed_str());
    };
    if let Some(known) = names.get(name.as_str()) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.into_boxed_str());
    names.insert(leaked);
    leaked
}

/// Queue names are namespaced (`<module>.<purpose>`) lowercase words: they are stored with
/// every job and shown to operators.
pub(crate) fn validate_name(name: &str) -> anyhow::Result<()> {
    let words: Vec<&str> = name.split('.').collect();
    let valid = words.len() >= 2
        && words.iter().all(|w| {
            w.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && w.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        && name.len() <= 100;
    anyhow::ensure!(
        valid,
        "`{name}` is not a valid queue name: use `<module>.<purpose>` in lowercase, e.g. `orders.payment_timeout`"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_are_namespaced_lowercase_words() {
        for good in ["orders.payment_timeout", "bus.retention.users", "jobs.retention", "payments.capture2"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["payment_timeout", "Orders.capture", "orders.", ".capture", "orders.pay-ment", "orders..x"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_built_at_run_time_are_interned() {
        let first = static_name("bus.retention.alpha".to_owned());
        let second = static_name(format!("bus.retention.{}", "alpha"));
        assert!(std::ptr::eq(first, second));
    }
}
