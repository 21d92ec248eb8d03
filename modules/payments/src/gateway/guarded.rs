//! The gateway as jobs call it: each call under a timeout, all calls behind one circuit
//! breaker (failsafe's state machine). Only transient failures (5xx, timeouts) count against
//! the gateway; a declined card is the gateway working. While the breaker is open, calls
//! fail fast with [`GatewayError::BreakerOpen`] and the jobs try again later.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use platform::breaker::CircuitBreaker;
pub use platform::breaker::{BreakerSettings, BreakerState};
use platform::metrics::{Metrics, latency_buckets};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use tracing::Instrument as _;
use uuid::Uuid;

use super::{
    Authorization, AuthorizeRequest, CaptureRequest, GatewayError, GatewayPayment, PaymentGateway, RefundRequest,
    VoidRequest,
};

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
    breaker: CircuitBreaker,
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
        let this = Self {
            inner,
            timeout,
            breaker: CircuitBreaker::new("the payment gateway", settings),
            calls: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
        };
        metrics.register(
            "bulkhead_payments_gateway_breaker_state",
            "The payment gateway's circuit breaker: 0 closed, 1 open, 2 half-open",
            this.breaker.gauge(),
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
        self.breaker.state()
    }

    /// Runs one call: refused while the breaker is open, cut off at the timeout, and its
    /// outcome recorded.
    async fn call<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, GatewayError>>,
    ) -> Result<T, GatewayError> {
        let Some(_permit) = self.breaker.permit() else {
            self.calls.get_or_create(&CallLabels { operation, outcome: "rejected" }).inc();
            return Err(GatewayError::BreakerOpen);
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
        self.breaker.record(outcome.as_ref().is_err_and(GatewayError::is_transient));
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
