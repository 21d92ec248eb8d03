//! Subscriptions: a named, durable consumer of one module's events (a Kafka consumer group),
//! and the handlers it runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use sqlx::PgConnection;

use super::append;
use super::event::{Event, EventEnvelope, Metadata};

/// What a handler gets: the subscriber's open transaction and the event being handled.
/// Everything done through `tx` commits together with the subscription's cursor, or not at all.
#[derive(Debug)]
pub struct HandlerContext<'a> {
    pub tx: &'a mut PgConnection,
    pub envelope: &'a EventEnvelope,
}

impl HandlerContext<'_> {
    /// Appends a follow-up event to the subscriber's own outbox, caused by this one.
    ///
    /// # Errors
    /// Database failures.
    pub async fn append<E: Event>(&mut self, event: &E) -> anyhow::Result<uuid::Uuid> {
        append::append(self.tx, event, &self.follow_up()).await
    }

    /// Metadata for follow-ups (events, jobs): same correlation, this event as the cause.
    pub fn follow_up(&self) -> Metadata {
        self.envelope.follow_up()
    }
}

/// Handles one event type. Runs inside the subscriber's transaction; must touch only the
/// subscriber's own data, and leave anything external (mail, payments) to a job enqueued in
/// that same transaction. Errors are retried, then dead-lettered.
#[async_trait]
pub trait Handler<E: Event>: Send + Sync + 'static {
    async fn handle(&self, ctx: &mut HandlerContext<'_>, event: E) -> anyhow::Result<()>;
}

/// Closures are handlers too: `|ctx, event| Box::pin(async move { … })`.
#[async_trait]
impl<E, F> Handler<E> for F
where
    E: Event,
    F: for<'a, 'b> Fn(&'a mut HandlerContext<'b>, E) -> BoxFuture<'a, anyhow::Result<()>> + Send + Sync + 'static,
{
    async fn handle(&self, ctx: &mut HandlerContext<'_>, event: E) -> anyhow::Result<()> {
        self(ctx, event).await
    }
}

/// Lets a closure be a handler (the compiler needs the signature spelled out once):
/// `sub.on(handler_fn(|ctx, event: OrderPlaced| Box::pin(async move { … })))`.
pub fn handler_fn<E, F>(f: F) -> F
where
    E: Event,
    F: for<'a, 'b> Fn(&'a mut HandlerContext<'b>, E) -> BoxFuture<'a, anyhow::Result<()>> + Send + Sync + 'static,
{
    f
}

/// A handler with its event type erased, so one subscription can hold several.
#[async_trait]
pub(crate) trait ErasedHandler: Send + Sync {
    async fn handle(&self, ctx: &mut HandlerContext<'_>) -> anyhow::Result<()>;
}

struct Typed<E, H> {
    handler: H,
    _event: std::marker::PhantomData<fn() -> E>,
}

#[async_trait]
impl<E: Event, H: Handler<E>> ErasedHandler for Typed<E, H> {
    async fn handle(&self, ctx: &mut HandlerContext<'_>) -> anyhow::Result<()> {
        let event = ctx.envelope.decode::<E>()?;
        self.handler.handle(ctx, event).await
    }
}

/// Where a new subscription starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// From the oldest retained event (the default: nothing is missed).
    Beginning,
    /// From events sequenced after the subscription first started.
    Latest,
}

/// How failures are retried before an event is dead-lettered.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Delay after the first failure; doubles each time, with jitter.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 8, base_delay: Duration::from_millis(500), max_delay: Duration::from_secs(300) }
    }
}

impl RetryPolicy {
    /// Exponential backoff with "equal jitter": half fixed, half random, so retries of many
    /// partitions do not synchronise and a retry never comes too soon.
    pub fn delay_after(&self, failed_attempts: u32) -> Duration {
        let exponent = failed_attempts.saturating_sub(1).min(30);
        let full = self.base_delay.saturating_mul(1 << exponent).min(self.max_delay);
        let half = full / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

/// A durable subscription of one module to another module's events.
#[derive(Clone)]
pub struct Subscription {
    /// Unique name, `<subscriber>.<purpose>`, e.g. `inventory.reserve_stock`.
    pub name: &'static str,
    /// The module whose events are read.
    pub source: &'static str,
    pub partitions: u16,
    pub retry: RetryPolicy,
    pub start_from: StartFrom,
    /// Longest a single handler may run before it counts as failed.
    pub handler_timeout: Duration,
    pub(crate) handlers: HashMap<&'static str, Arc<dyn ErasedHandler>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("name", &self.name)
            .field("source", &self.source)
            .field("partitions", &self.partitions)
            .field("events", &self.event_types())
            .finish_non_exhaustive()
    }
}

impl Subscription {
    pub fn new(name: &'static str, source: &'static str) -> Self {
        Self {
            name,
            source,
            partitions: 1,
            retry: RetryPolicy::default(),
            start_from: StartFrom::Beginning,
            handler_timeout: Duration::from_secs(30),
            handlers: HashMap::new(),
        }
    }

    /// Splits the subscription into `n` partitions by key: one key's events stay in order,
    /// different keys proceed in parallel.
    pub fn partitions(mut self, n: u16) -> Self {
        self.partitions = n.max(1);
        self
    }

    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.start_from = start;
        self
    }

    pub fn handler_timeout(mut self, timeout: Duration) -> Self {
        self.handler_timeout = timeout;
        self
    }

    /// Handles events of type `E`; events of types without a handler are skipped.
    pub fn on<E: Event>(mut self, handler: impl Handler<E>) -> Self {
        self.handlers.insert(E::TYPE, Arc::new(Typed { handler, _event: std::marker::PhantomData }));
        self
    }

    pub fn event_types(&self) -> Vec<&'static str> {
        let mut types: Vec<&'static str> = self.handlers.keys().copied().collect();
        types.sort_unstable();
        types
    }

    pub(crate) fn handler(&self, event_type: &str) -> Option<&Arc<dyn ErasedHandler>> {
        self.handlers.get(event_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_stops_at_the_cap() {
        let policy =
            RetryPolicy { max_attempts: 10, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
        for attempt in 1..=8 {
            let full = Duration::from_millis(100 * (1 << (attempt - 1))).min(Duration::from_secs(1));
            let delay = policy.delay_after(attempt);
            assert!(delay >= full / 2 && delay <= full, "attempt {attempt}: {delay:?} not within {full:?}");
        }
    }
}
