//! The gateway as jobs call it: each call under a timeout, all calls behind one circuit
//! breaker (failsafe's state machine). Only transient failures (5xx, timeouts) count against
//! the gateway; a declined card is the gateway working. While the breaker is open, calls
//! fail fast with [`GatewayError::BreakerOpen`] and the jobs try again later.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use failsafe::backoff::{self, EqualJittered};
use failsafe::failure_policy::{self, ConsecutiveFailures};
use failsafe::{Instrument, StateMachine};
use platform::metrics::{Metrics, latency_buckets};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use serde::Serialize;
use tracing::Instrument as _;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    Authorization, AuthorizeRequest, CaptureRequest, GatewayError, GatewayPayment, PaymentGateway, RefundRequest,
    VoidRequest,
};

/// When the breaker opens and for how long.
#[derive(Debug, Clone)]
pub struct BreakerSettings {
    /// Consecutive transient failures that open the breaker (5).
    pub failures: u32,
    /// How long it stays open the first time (10 s); each failed probe doubles it, with
    /// jitter, up to `max_open` (2 min).
    pub open_for: Duration,
    pub max_open: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self { failures: 5, open_for: Duration::from_secs(10), max_open: Duration::from_secs(120) }
    }
}

/// The breaker's state, as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail fast; the gateway is left alone.
    Open,
    /// The open period is over; the next calls probe the gateway.
    HalfOpen,
}

/// Tracks the state for reads and metrics (failsafe reports transitions, not the state).
#[derive(Debug, Clone)]
struct Observer {
    state: Arc<AtomicU8>,
    gauge: Gauge,
}

impl Observer {
    fn set(&self, state: BreakerState) {
        self.state.store(state as u8, Ordering::SeqCst);
        self.gauge.set(state as i64);
    }
}

impl Instrument for Observer {
    fn on_call_rejected(&self) {}

    fn on_open(&self) {
        tracing::warn!("payment gateway circuit breaker opened: calls fail fast until it probes again");
        self.set(BreakerState::Open);
    }

    fn on_half_open(&self) {
        tracing::info!("payment gateway circuit breaker half-open: probing the gateway");
        self.set(BreakerState::HalfOpen);
    }

    fn on_closed(&self) {
        if self.state.load(Ordering::SeqCst) != BreakerState::Closed as u8 {
            tracing::info!("payment gateway circuit breaker closed: the gateway answers again");
        }
        self.set(BreakerState::Closed);
    }
}

/// The one call allowed through while half-open; cleared when it ends, even if the call is
/// dropped midway (a cancelled job).
struct Probe<'a>(&'a AtomicBool);

impl<'a> Probe<'a> {
    fn start(flag: &'a AtomicBool) -> Option<Self> {
        flag.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).ok().map(|_| Self(flag))
    }
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

/// The guarded gateway; clones share the breaker.
#[derive(Clone)]
pub(crate) struct Guarded {
    inner: Arc<dyn PaymentGateway>,
    timeout: Duration,
    breaker: StateMachine<ConsecutiveFailures<EqualJittered>, Observer>,
    observer: Observer,
    /// Whether a half-open probe is in flight.
    probing: Arc<AtomicBool>,
    calls: Family<CallLabels, Counter>,
    duration: Family<OperationLabels, Histogram, fn() -> Histogram>,
}

impl std::fmt::Debug for Guarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("inner", &self.inner)
            .field("timeout", &self.timeout)
            .field("breaker", &self.state())
            .finish_non_exhaustive()
    }
}

impl Guarded {
    pub(crate) fn new(
        inner: Arc<dyn PaymentGateway>,
        timeout: Duration,
        settings: &BreakerSettings,
        metrics: &Metrics,
    ) -> Self {
        let observer = Observer { state: Arc::new(AtomicU8::new(BreakerState::Closed as u8)), gauge: Gauge::default() };
        let backoff = backoff::equal_jittered(settings.open_for, settings.max_open.max(settings.open_for));
        let policy = failure_policy::consecutive_failures(settings.failures.max(1), backoff);
        let breaker = StateMachine::new(policy, observer.clone());
        let this = Self {
            inner,
            timeout,
            breaker,
            observer,
            probing: Arc::default(),
            calls: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
        };
        metrics.register(
            "bulkhead_payments_gateway_breaker_state",
            "The payment gateway's circuit breaker: 0 closed, 1 open, 2 half-open",
            this.observer.gauge.clone(),
        );
        metrics.register(
            "bulkhead_payments_gateway_calls",
            "Payment gateway calls by operation and outcome",
            this.calls.clone(),
        );
        metrics.register(
            "bulkhead_payments_gateway_call_duration_seconds",
            "Time a payment gateway call took, answered or not",
            this.duration.clone(),
        );
        this
    }

    pub(crate) fn state(&self) -> BreakerState {
        match self.observer.state.load(Ordering::SeqCst) {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    /// Runs one call: refused while the breaker is open, cut off at the timeout, and its
    /// outcome recorded.
    async fn call<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, GatewayError>>,
    ) -> Result<T, GatewayError> {
        let rejected = || {
            self.calls.get_or_create(&CallLabels { operation, outcome: "rejected" }).inc();
            Err(GatewayError::BreakerOpen)
        };
        if !self.breaker.is_call_permitted() {
            return rejected();
        }
        // Half-open lets one probe through at a time; the others wait for its verdict.
        let _probe = match self.state() {
            BreakerState::HalfOpen => match Probe::start(&self.probing) {
                Some(probe) => Some(probe),
                None => return rejected(),
            },
            _ => None,
        };
        let started = Instant::now();
        let span = tracing::info_span!(
            "payments.gateway",
            operation,
            outcome = tracing::field::Empty,
            "bulkhead.module" = "payments",
            "otel.name" = format!("gateway {operation}"),
            "otel.kind" = "client",
        );
        let outcome = tokio::time::timeout(self.timeout, call)
            .instrument(span.clone())
            .await
            .unwrap_or(Err(GatewayError::Timeout));
        self.duration.get_or_create(&OperationLabels { operation }).observe(started.elapsed().as_secs_f64());
        let label = match &outcome {
            Ok(_) => "ok",
            Err(GatewayError::Declined { .. }) => "declined",
            Err(GatewayError::Refused(_)) => "refused",
            Err(GatewayError::Unavailable(_)) => "unavailable",
            Err(GatewayError::Timeout) => "timeout",
            Err(GatewayError::BreakerOpen) => "rejected",
        };
        self.calls.get_or_create(&CallLabels { operation, outcome: label }).inc();
        span.record("outcome", label);
        match &outcome {
            Err(error) if error.is_transient() => self.breaker.on_error(),
            _ => self.breaker.on_success(),
        }
        outcome
    }

    pub(crate) async fn authorize(&self, request: &AuthorizeRequest) -> Result<Authorization, GatewayError> {
        self.call("authorize", self.inner.authorize(request)).await
    }

    pub(crate) async fn capture(&self, request: &CaptureRequest) -> Result<(), GatewayError> {
        self.call("capture", self.inner.capture(request)).await
    }

    pub(crate) async fn void(&self, request: &VoidRequest) -> Result<(), GatewayError> {
        self.call("void", self.inner.void(request)).await
    }

    pub(crate) async fn refund(&self, request: &RefundRequest) -> Result<String, GatewayError> {
        self.call("refund", self.inner.refund(request)).await
    }

    pub(crate) async fn lookup(&self, payment_id: Uuid) -> Result<GatewayPayment, GatewayError> {
        self.call("lookup", self.inner.lookup(payment_id)).await
    }
}
