//! A circuit breaker around calls to something outside the process (the payment gateway,
//! another module's process): failsafe's state machine, plus what operators and callers need
//! around it — its state readable by APIs and exported as a gauge, and one half-open probe at
//! a time. Only transient failures (timeouts, 5xx, unreachable) should count: a refusal is
//! the other side working.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use failsafe::failure_policy::{self, ConsecutiveFailures};
use failsafe::{Instrument, StateMachine};
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use utoipa::ToSchema;

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
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail fast; the gateway is left alone.
    Open,
    /// The open period is over; the next calls probe the gateway.
    HalfOpen,
}

/// How long the breaker stays open each time in a row it opens: exponential from `start` up
/// to `max`, keeping half and jittering the other half (AWS's "equal jitter"), so breakers
/// that opened together do not probe together. Failsafe's own needs whole seconds; a
/// port's breaker may open for less.
#[derive(Debug, Clone)]
struct OpenPeriods {
    start: Duration,
    max: Duration,
    attempt: u32,
}

impl Iterator for OpenPeriods {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let step = self.start.saturating_mul(2u32.saturating_pow(self.attempt.min(30))).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        Some(half + half.mul_f64(rand::random::<f64>()))
    }
}

/// Tracks the state for reads and metrics (failsafe reports transitions, not the state).
#[derive(Debug, Clone)]
struct Observer {
    /// What the breaker guards, for log lines.
    guards: Arc<str>,
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
        tracing::warn!(guards = %self.guards, "circuit breaker opened: calls fail fast until it probes again");
        self.set(BreakerState::Open);
    }

    fn on_half_open(&self) {
        tracing::info!(guards = %self.guards, "circuit breaker half-open: probing");
        self.set(BreakerState::HalfOpen);
    }

    fn on_closed(&self) {
        if self.state.load(Ordering::SeqCst) != BreakerState::Closed as u8 {
            tracing::info!(guards = %self.guards, "circuit breaker closed: calls go through again");
        }
        self.set(BreakerState::Closed);
    }
}

/// Leave to make one call; while half-open only one probe holds it at a time. Dropping it
/// (a call cancelled midway) frees the probe.
#[derive(Debug)]
pub struct Permit<'a> {
    probe: Option<&'a AtomicBool>,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Some(flag) = self.probe {
            flag.store(false, Ordering::SeqCst);
        }
    }
}

/// A circuit breaker; clones share their state.
#[derive(Clone)]
pub struct CircuitBreaker {
    machine: StateMachine<ConsecutiveFailures<OpenPeriods>, Observer>,
    observer: Observer,
    /// Whether a half-open probe is in flight.
    probing: Arc<AtomicBool>,
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("guards", &self.observer.guards)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl CircuitBreaker {
    /// A closed breaker guarding `guards` (named in log lines).
    pub fn new(guards: &str, settings: &BreakerSettings) -> Self {
        let observer = Observer {
            guards: guards.into(),
            state: Arc::new(AtomicU8::new(BreakerState::Closed as u8)),
            gauge: Gauge::default(),
        };
        let periods =
            OpenPeriods { start: settings.open_for, max: settings.max_open.max(settings.open_for), attempt: 0 };
        let policy = failure_policy::consecutive_failures(settings.failures.max(1), periods);
        Self { machine: StateMachine::new(policy, observer.clone()), observer, probing: Arc::default() }
    }

    /// The state as a gauge (0 closed, 1 open, 2 half-open), to register under a metric name.
    pub fn gauge(&self) -> Gauge {
        self.observer.gauge.clone()
    }

    pub fn state(&self) -> BreakerState {
        match self.observer.state.load(Ordering::SeqCst) {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    /// Leave to call, or `None` while the breaker is open (or another call is probing).
    pub fn permit(&self) -> Option<Permit<'_>> {
        if !self.machine.is_call_permitted() {
            return None;
        }
        // Half-open lets one probe through at a time; the others wait for its verdict.
        if self.state() == BreakerState::HalfOpen {
            let flag = self.probing.as_ref();
            return flag
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                .ok()
                .map(|_| Permit { probe: Some(flag) });
        }
        Some(Permit { probe: None })
    }

    /// Records a call's outcome: a transient failure counts toward opening, anything else
    /// (success, or a refusal that shows the other side works) closes.
    pub fn record(&self, transient_failure: bool) {
        if transient_failure {
            self.machine.on_error();
        } else {
            self.machine.on_success();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_periods_double_with_jitter_up_to_the_cap() {
        let mut periods =
            OpenPeriods { start: Duration::from_millis(200), max: Duration::from_millis(1000), attempt: 0 };
        let first = periods.next().unwrap_or_default();
        assert!((Duration::from_millis(100)..=Duration::from_millis(200)).contains(&first), "{first:?}");
        let second = periods.next().unwrap_or_default();
        assert!((Duration::from_millis(200)..=Duration::from_millis(400)).contains(&second), "{second:?}");
        let capped = periods.nth(10).unwrap_or_default();
        assert!((Duration::from_millis(500)..=Duration::from_millis(1000)).contains(&capped), "{capped:?}");
    }
}
