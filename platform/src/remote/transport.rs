//! The resilient HTTP client under every port client: one [`HttpTransport`] per called
//! module. Each call gets
//! - the caller's deadline as its timeout (a default when it has none), also sent along so
//!   the callee knows how long the answer is useful;
//! - retries with exponential backoff and full jitter inside that deadline, for idempotent
//!   calls and transient failures only;
//! - a circuit breaker per called module, so a module that is down is not asked again and
//!   again while it recovers;
//! - a service token naming the calling module, and the request id, correlation id,
//!   causation, actor and `traceparent` as headers;
//! - every transport failure as [`RemoteError::Unavailable`] or [`RemoteError::Timeout`].

use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use reqwest::StatusCode;
use serde_json::Value;
use shared_kernel::event::traceparent;
use shared_kernel::port::CallContext;
use shared_kernel::port::remote::{Method, RemoteCall, RemoteError, Transport};
use tracing::Instrument;

use super::headers;
use super::keys::ServiceKeys;
use crate::breaker::{BreakerSettings, CircuitBreaker};
use crate::metrics::{Metrics, latency_buckets};

/// How calls to another module's process behave.
#[derive(Debug, Clone)]
pub struct TransportSettings {
    /// The timeout of a call whose context has no deadline (10 s).
    pub default_timeout: Duration,
    /// Attempts of an idempotent call, the first included (3).
    pub max_attempts: u32,
    /// The first retry waits up to this long (50 ms), doubling each time, with full jitter.
    pub retry_base: Duration,
    /// The longest wait between attempts (1 s).
    pub retry_max: Duration,
    /// When the breaker of a called module opens (5 failures in a row) and for how long.
    pub breaker: BreakerSettings,
}

impl Default for TransportSettings {
    fn default() -> Self {
        Self {
            default_timeout: Duration::from_secs(10),
            max_attempts: 3,
            retry_base: Duration::from_millis(50),
            retry_max: Duration::from_secs(1),
            breaker: BreakerSettings {
                failures: 5,
                open_for: Duration::from_secs(5),
                max_open: Duration::from_secs(60),
            },
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    callee: String,
    operation: String,
    transport: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    callee: String,
    operation: String,
    transport: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CalleeLabels {
    callee: String,
}

/// The port call metrics of one process, in process and over HTTP alike, so the two
/// topologies can be compared: `bulkhead_port_calls_total{callee, operation, transport,
/// outcome}`, `bulkhead_port_call_duration_seconds{callee, operation, transport}` and
/// `bulkhead_port_breaker_state{callee}`.
#[derive(Clone)]
pub struct PortMetrics {
    calls: Family<CallLabels, Counter>,
    durations: Family<DurationLabels, Histogram, fn() -> Histogram>,
    breakers: Family<CalleeLabels, Gauge>,
}

impl std::fmt::Debug for PortMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortMetrics").finish_non_exhaustive()
    }
}

impl PortMetrics {
    /// Registers the families in `metrics`; call once per process.
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self {
            calls: Family::default(),
            durations: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            breakers: Family::default(),
        };
        metrics.register(
            "bulkhead_port_calls",
            "Port calls by called module, operation, transport (in_process or http) and outcome",
            this.calls.clone(),
        );
        metrics.register(
            "bulkhead_port_call_duration_seconds",
            "Time a port call took, answered or not, by transport",
            this.durations.clone(),
        );
        metrics.register(
            "bulkhead_port_breaker_state",
            "The circuit breaker of calls to another module's process: 0 closed, 1 open, 2 half-open",
            this.breakers.clone(),
        );
        this
    }

    /// Records one call.
    pub fn observe(
        &self,
        callee: &str,
        operation: &str,
        transport: &'static str,
        outcome: &'static str,
        took: Duration,
    ) {
        let (callee, operation) = (callee.to_owned(), operation.to_owned());
        self.durations
            .get_or_create(&DurationLabels { callee: callee.clone(), operation: operation.clone(), transport })
            .observe(took.as_secs_f64());
        self.calls.get_or_create(&CallLabels { callee, operation, transport, outcome }).inc();
    }
}

/// Calls to one module in another process.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    /// `<process URL>/internal/<callee>/v1`, without a trailing slash.
    base: String,
    caller: &'static str,
    callee: &'static str,
    keys: ServiceKeys,
    breaker: CircuitBreaker,
    settings: TransportSettings,
    metrics: PortMetrics,
}

impl HttpTransport {
    /// Calls from `caller` to `callee`, served by the process at `process_url`.
    pub fn new(
        client: reqwest::Client,
        process_url: &url::Url,
        caller: &'static str,
        callee: &'static str,
        keys: ServiceKeys,
        settings: TransportSettings,
        metrics: PortMetrics,
    ) -> Self {
        let base = format!("{}/internal/{callee}/v1", process_url.as_str().trim_end_matches('/'));
        let breaker = CircuitBreaker::new(&format!("calls from {caller} to {callee}"), &settings.breaker);
        // Failsafe changes state only inside calls, so publishing after each call keeps the
        // gauge current.
        metrics.breakers.get_or_create(&CalleeLabels { callee: callee.to_owned() }).set(0);
        Self { client, base, caller, callee, keys, breaker, settings, metrics }
    }

    /// The state of this callee's breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    fn publish_breaker_state(&self) {
        let state = self.breaker.gauge().get();
        self.metrics.breakers.get_or_create(&CalleeLabels { callee: self.callee.to_owned() }).set(state);
    }

    /// One attempt, within `budget`.
    async fn attempt(&self, ctx: &CallContext, call: &RemoteCall, budget: Duration) -> Attempt {
        let token = match self.keys.mint(self.caller, self.callee) {
            Ok(token) => token,
            Err(error) => return Attempt::Final(RemoteError::Unavailable(format!("{error:#}"))),
        };
        let url = format!("{}{}", self.base, call.path);
        // A client span per attempt; the callee's request span continues it.
        let span = tracing::info_span!(
            "port.call",
            callee = self.callee,
            path = %call.path,
            "bulkhead.module" = self.caller,
            "otel.name" = format!("port {}", self.callee),
            "otel.kind" = "client",
        );
        let trace = span
            .in_scope(crate::telemetry::current_traceparent)
            .unwrap_or_else(|| traceparent::child_of(ctx.traceparent.as_deref()));
        let mut request = match call.method {
            Method::Get => self.client.get(url),
            Method::Post => self.client.post(url).json(call.body.as_ref().unwrap_or(&Value::Null)),
        };
        request = request
            .timeout(budget)
            .bearer_auth(token)
            .header(headers::DEADLINE_MS, budget.as_millis().to_string())
            .header(headers::CORRELATION_ID, &ctx.correlation_id)
            .header(headers::TRACEPARENT, trace);
        if let Some(request_id) = &ctx.request_id {
            request = request.header(headers::REQUEST_ID, request_id);
        }
        if let Some(causation) = &ctx.causation_id {
            request = request.header(headers::CAUSATION_ID, causation);
        }
        if let Some(actor) = &ctx.actor {
            request = request.header(headers::ACTOR, actor);
        }
        match request.send().instrument(span).await {
            Ok(response) => read(response).await,
            Err(error) if error.is_timeout() => Attempt::Transient(RemoteError::Timeout),
            Err(error) => Attempt::Transient(RemoteError::Unavailable(format!("{} unreachable: {error}", self.callee))),
        }
    }

    /// Full jitter: a random wait up to the exponential step (AWS's "Exponential Backoff
    /// And Jitter"), so callers that failed together do not come back together.
    fn backoff(&self, attempt: u32) -> Duration {
        let step = self.settings.retry_base.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        step.min(self.settings.retry_max).mul_f64(rand::random::<f64>())
    }
}

/// What one attempt came to.
enum Attempt {
    Answered(Value),
    /// Worth another attempt if the call is idempotent and time is left; counts against
    /// the breaker.
    Transient(RemoteError),
    /// The callee answered and said no, or the answer cannot be used; not retried.
    Final(RemoteError),
}

async fn read(response: reqwest::Response) -> Attempt {
    let status = response.status();
    let body: Value = match response.bytes().await {
        Ok(bytes) if bytes.is_empty() => Value::Null,
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        Err(error) if error.is_timeout() => return Attempt::Transient(RemoteError::Timeout),
        Err(error) => return Attempt::Transient(RemoteError::Unavailable(format!("reading the answer: {error}"))),
    };
    if status.is_success() {
        return match body {
            Value::Object(mut envelope) => match envelope.remove("data") {
                Some(data) => Attempt::Answered(data),
                None => Attempt::Final(RemoteError::Invalid("an answer without `data`".to_owned())),
            },
            _ => Attempt::Final(RemoteError::Invalid(format!("a {status} answer that is not an envelope"))),
        };
    }
    let error = &body["error"];
    let code = error["code"].as_str().unwrap_or_default().to_owned();
    let message = error["message"].as_str().unwrap_or_default().to_owned();
    let transient = status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        // Our own proxy's way of saying the module's process is down.
        || code == "module_unavailable";
    if transient {
        let reason = if code.is_empty() { status.to_string() } else { format!("{status} {code}: {message}") };
        if status == StatusCode::GATEWAY_TIMEOUT {
            return Attempt::Transient(RemoteError::Timeout);
        }
        return Attempt::Transient(RemoteError::Unavailable(reason));
    }
    Attempt::Final(RemoteError::Refused { status: status.as_u16(), code, message })
}

#[async_trait::async_trait]
impl Transport for HttpTransport {
    async fn call(&self, ctx: &CallContext, call: RemoteCall) -> Result<Value, RemoteError> {
        let started = Instant::now();
        let deadline = ctx.deadline.unwrap_or_else(|| started + self.settings.default_timeout);
        let mut attempts = 0;
        let outcome = loop {
            let Some(permit) = self.breaker.permit() else {
                break Err((
                    "rejected",
                    RemoteError::Unavailable(format!("{} is failing: its circuit breaker is open", self.callee)),
                ));
            };
            attempts += 1;
            let budget = deadline.saturating_duration_since(Instant::now());
            if budget.is_zero() {
                break Err(("timeout", RemoteError::Timeout));
            }
            let attempt = self.attempt(ctx, &call, budget).await;
            let transient = matches!(attempt, Attempt::Transient(_));
            self.breaker.record(transient);
            drop(permit);
            self.publish_breaker_state();
            match attempt {
                Attempt::Answered(data) => break Ok(data),
                Attempt::Final(error) => {
                    break Err((
                        if matches!(error, RemoteError::Refused { .. }) { "refused" } else { "invalid" },
                        error,
                    ));
                }
                Attempt::Transient(error) => {
                    let pause = self.backoff(attempts);
                    let time_left = deadline.saturating_duration_since(Instant::now()) > pause;
                    if !(call.idempotent && attempts < self.settings.max_attempts && time_left) {
                        let label = if error == RemoteError::Timeout { "timeout" } else { "unavailable" };
                        break Err((label, error));
                    }
                    tracing::debug!(callee = self.callee, operation = call.operation, attempts, %error, "retrying a port call");
                    tokio::time::sleep(pause).await;
                }
            }
        };
        let label = match &outcome {
            Ok(_) => "ok",
            Err((label, _)) => label,
        };
        self.metrics.observe(self.callee, call.operation, "http", label, started.elapsed());
        outcome.map_err(|(_, error)| {
            tracing::info!(callee = self.callee, operation = call.operation, attempts, %error, "port call failed");
            error
        })
    }
}
