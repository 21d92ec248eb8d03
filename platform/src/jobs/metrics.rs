//! The jobs runtime's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use crate::metrics::{Metrics, latency_buckets};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    queue: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

/// How one attempt of a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Done.
    Succeeded,
    /// Failed with attempts left: it runs again.
    Retried,
    /// Failed on its last attempt: it stays `Failed`.
    Failed,
    /// Ended by the handler (`JobError::Abort`): `Killed`.
    Aborted,
}

impl Outcome {
    fn label(self) -> String {
        match self {
            Self::Succeeded => "succeeded",
            Self::Retried => "retried",
            Self::Failed => "failed",
            Self::Aborted => "aborted",
        }
        .to_owned()
    }
}

/// Counters and the duration histogram of one jobs runtime.
#[derive(Debug, Clone)]
pub(crate) struct JobMetrics {
    outcomes: Family<OutcomeLabels, Counter>,
    durations: Family<QueueLabels, Histogram, fn() -> Histogram>,
    restarts: Family<QueueLabels, Counter>,
}

impl JobMetrics {
    pub(crate) fn register(metrics: &Metrics) -> Self {
        let this = Self {
            outcomes: Family::default(),
            durations: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            restarts: Family::default(),
        };
        metrics.register("bulkhead_jobs", "Job attempts, by queue and outcome", this.outcomes.clone());
        metrics.register(
            "bulkhead_jobs_duration_seconds",
            "Time an attempt took, successful or not",
            this.durations.clone(),
        );
        metrics.register(
            "bulkhead_jobs_worker_restarts",
            "Workers restarted after losing their storage (a database outage)",
            this.restarts.clone(),
        );
        this
    }

    pub(crate) fn attempt(&self, queue: &str, outcome: Outcome, seconds: f64) {
        self.outcomes.get_or_create(&OutcomeLabels { queue: queue.to_owned(), outcome: outcome.label() }).inc();
        self.durations.get_or_create(&QueueLabels { queue: queue.to_owned() }).observe(seconds);
    }

    pub(crate) fn restarted(&self, queue: &str) {
        self.restarts.get_or_create(&QueueLabels { queue: queue.to_owned() }).inc();
    }
}
