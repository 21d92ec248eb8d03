//! The tower services a worker runs each job through, outermost first:
//!
//! 1. apalis' persistence (locks the job, records its outcome);
//! 2. a concurrency limit (one permit per job, retries included);
//! 3. [`RetryService`]: the queue's backoff between attempts, in process;
//! 4. apalis' lifecycle (counts the attempt, maps the result to a status);
//! 5. [`HandlerService`]: the module's handler, in a span, with metrics.
//!
//! Retrying in process because apalis' own storage has no backoff: a failed job is fetched
//! again at the next poll. Retrying outside the lifecycle service makes every attempt count in
//! the job's `attempts`, so after the last one it is `Failed` for good.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use apalis::prelude::{AbortError, BoxDynError, Task};
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};
use tracing::Instrument;

use super::metrics::{JobMetrics, Outcome};
use super::queue::ErasedHandler;
use super::{DEFAULT_MAX_ATTEMPTS, JobContext, JobError};
use crate::bus::RetryPolicy;
use crate::telemetry;

type Payload = serde_json::Value;

/// Runs one attempt through the queue's handler.
#[derive(Clone)]
pub(crate) struct HandlerService {
    pub(crate) queue: &'static str,
    pub(crate) handler: Arc<dyn ErasedHandler>,
    pub(crate) metrics: JobMetrics,
}

impl Service<Task<Payload>> for HandlerService {
    type Response = ();
    type Error = BoxDynError;
    type Future = BoxFuture<'static, Result<(), BoxDynError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, task: Task<Payload>) -> Self::Future {
        let (queue, handler, metrics) = (self.queue, self.handler.clone(), self.metrics.clone());
        let (payload, execution) = task.take();
        async move {
            // Read here, not in `call`: the lifecycle service counts the attempt on first poll.
            let id = execution.task_id().map(ToString::to_string).unwrap_or_default();
            let attempt = u32::try_from(execution.attempt()).unwrap_or(u32::MAX);
            let max_attempts = max_attempts(execution.max_attempts());
            let span = tracing::info_span!(
                "job",
                queue,
                job_id = %id,
                attempt,
                max_attempts,
                "bulkhead.module" = telemetry::module_of(queue),
                "otel.name" = queue,
            );
            // Each attempt is a span of the trace that enqueued the job.
            if let Some(traceparent) = execution.metadata().get(telemetry::TRACEPARENT) {
                telemetry::continue_trace(&span, traceparent);
            }
            let started = Instant::now();
            let ctx = JobContext { id, attempt };
            let ran = AssertUnwindSafe(handler.run(payload, ctx)).catch_unwind().instrument(span.clone()).await;
            let seconds = started.elapsed().as_secs_f64();
            let _entered = span.enter();
            let result = ran.unwrap_or_else(|panic| {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".to_owned());
                Err(JobError::Retry(anyhow::anyhow!("the handler panicked: {message}")))
            });
            match result {
                Ok(()) => {
                    metrics.attempt(queue, Outcome::Succeeded, seconds);
                    tracing::debug!("job done");
                    Ok(())
                }
                Err(JobError::Abort(error)) => {
                    metrics.attempt(queue, Outcome::Aborted, seconds);
                    tracing::warn!("job aborted: {error:#}");
                    // apalis recognises an abort only when it is the top-level error.
                    Err(Box::new(AbortError::new(format!("{error:#}"))) as BoxDynError)
                }
                Err(JobError::Retry(error)) => {
                    let last = attempt >= max_attempts;
                    metrics.attempt(queue, if last { Outcome::Failed } else { Outcome::Retried }, seconds);
                    if last {
                        tracing::error!("job failed on its last attempt: {error:#}");
                    } else {
                        tracing::warn!("job attempt failed: {error:#}");
                    }
                    Err(format!("{error:#}").into())
                }
            }
        }
        .boxed()
    }
}

fn max_attempts(recorded: Option<usize>) -> u32 {
    recorded.map_or(DEFAULT_MAX_ATTEMPTS, |n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// Retries a failed attempt after the queue's backoff while the job has attempts left and
/// the runtime is not stopping. A job interrupted by a stop keeps its remaining attempts:
/// it is `Failed` below its limit, so any process fetches it again.
#[derive(Clone)]
pub(crate) struct RetryService<S> {
    pub(crate) inner: S,
    pub(crate) policy: RetryPolicy,
    pub(crate) stop: CancellationToken,
}

impl<S> Service<Task<Payload>> for RetryService<S>
where
    S: Service<Task<Payload>, Response = (), Error = BoxDynError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = BoxDynError;
    type Future = BoxFuture<'static, Result<(), BoxDynError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, task: Task<Payload>) -> Self::Future {
        // The service that was polled ready handles this call; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (policy, stop) = (self.policy, self.stop.clone());
        async move {
            let mut result = inner.call(task.clone()).await;
            loop {
                let Err(error) = &result else { return result };
                let attempt = task.ctx().attempt();
                let limit = usize::try_from(max_attempts(task.ctx().max_attempts())).unwrap_or(usize::MAX);
                if error.downcast_ref::<AbortError>().is_some() || attempt >= limit || stop.is_cancelled() {
                    return result;
                }
                let delay = policy.delay_after(u32::try_from(attempt).unwrap_or(u32::MAX));
                tokio::select! {
                    () = stop.cancelled() => return result,
                    () = tokio::time::sleep(delay) => {}
                }
                // apalis' lifecycle service stays unready once the worker is stopping.
                tokio::select! {
                    ready = inner.ready() => { ready?; }
                    () = stop.cancelled() => return result,
                }
                result = inner.call(task.clone()).await;
            }
        }
        .boxed()
    }
}

/// Puts a [`RetryService`] around the lifecycle service apalis adds innermost.
#[derive(Clone)]
pub(crate) struct RetryLayer {
    pub(crate) policy: RetryPolicy,
    pub(crate) stop: CancellationToken,
}

impl<S> tower::Layer<S> for RetryLayer {
    type Service = RetryService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RetryService { inner, policy: self.policy, stop: self.stop.clone() }
    }
}
