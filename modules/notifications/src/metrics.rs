//! The module's metrics, Prometheus-named: delivery attempts by channel and outcome, and
//! how long they took.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use crate::domain::Channel;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    channel: &'static str,
    /// `succeeded`, `transient_failure` or `permanent_failure`.
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: &'static str,
}

type Durations = Family<ChannelLabels, Histogram, fn() -> Histogram>;

/// Counted whether or not they are registered, so the service never checks.
#[derive(Debug, Clone)]
pub(crate) struct DeliveryMetrics {
    attempts: Family<AttemptLabels, Counter>,
    durations: Durations,
}

impl Default for DeliveryMetrics {
    fn default() -> Self {
        Self {
            attempts: Family::default(),
            durations: Family::new_with_constructor(|| Histogram::new(platform::metrics::latency_buckets())),
        }
    }
}

impl DeliveryMetrics {
    pub(crate) fn register(&self, metrics: &platform::metrics::Metrics) {
        metrics.register(
            "bulkhead_notifications_delivery_attempts",
            "Attempts to deliver a notification, by channel and outcome",
            self.attempts.clone(),
        );
        metrics.register(
            "bulkhead_notifications_delivery_duration_seconds",
            "Time one delivery attempt took, by channel",
            self.durations.clone(),
        );
    }

    pub(crate) fn attempt(&self, channel: Channel, outcome: &'static str, seconds: f64) {
        self.attempts.get_or_create(&AttemptLabels { channel: channel.as_str(), outcome }).inc();
        self.durations.get_or_create(&ChannelLabels { channel: channel.as_str() }).observe(seconds);
    }
}
