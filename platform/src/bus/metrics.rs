//! The bus's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::metrics::{Metrics, latency_buckets};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModuleLabels {
    module: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriptionLabels {
    subscription: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    subscription: String,
    partition: String,
}

/// Counters, gauges and the handler-duration histogram of one bus.
#[derive(Debug, Clone)]
pub struct BusMetrics {
    appended: Family<ModuleLabels, Counter>,
    relayed: Family<ModuleLabels, Counter>,
    delivered: Family<SubscriptionLabels, Counter>,
    retried: Family<SubscriptionLabels, Counter>,
    dead_lettered: Family<SubscriptionLabels, Counter>,
    dead_letters_waiting: Family<SubscriptionLabels, Gauge>,
    lag: Family<PartitionLabels, Gauge>,
    handler_duration: Family<SubscriptionLabels, Histogram, fn() -> Histogram>,
}

impl BusMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self {
            appended: Family::default(),
            relayed: Family::default(),
            delivered: Family::default(),
            retried: Family::default(),
            dead_lettered: Family::default(),
            dead_letters_waiting: Family::default(),
            lag: Family::default(),
            handler_duration: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
        };
        metrics.register(
            "bulkhead_bus_appended_events",
            "Events committed to a module's outbox",
            this.appended.clone(),
        );
        metrics.register(
            "bulkhead_bus_relayed_events",
            "Sequenced events a relay forwarded to the broker (Kafka transport)",
            this.relayed.clone(),
        );
        metrics.register("bulkhead_bus_delivered_events", "Events a subscription handled", this.delivered.clone());
        metrics.register("bulkhead_bus_retried_events", "Failed handlings scheduled for a retry", this.retried.clone());
        metrics.register(
            "bulkhead_bus_dead_lettered_events",
            "Events moved to dead letters after their last attempt",
            this.dead_lettered.clone(),
        );
        metrics.register(
            "bulkhead_bus_dead_letters",
            "Dead letters waiting for a replay",
            this.dead_letters_waiting.clone(),
        );
        metrics.register("bulkhead_bus_lag_events", "Events of a partition not yet handled", this.lag.clone());
        metrics.register(
            "bulkhead_bus_handler_duration_seconds",
            "Time a handler took, successful or not",
            this.handler_duration.clone(),
        );
        this
    }

    fn subscription(name: &str) -> SubscriptionLabels {
        SubscriptionLabels { subscription: name.to_owned() }
    }

    pub fn appended(&self, module: &str, count: u64) {
        self.appended.get_or_create(&ModuleLabels { module: module.to_owned() }).inc_by(count);
    }

    pub fn relayed(&self, module: &str, count: u64) {
        self.relayed.get_or_create(&ModuleLabels { module: module.to_owned() }).inc_by(count);
    }

    pub fn delivered(&self, subscription: &str, count: u64) {
        self.delivered.get_or_create(&Self::subscription(subscription)).inc_by(count);
    }

    pub fn retried(&self, subscription: &str, count: u64) {
        self.retried.get_or_create(&Self::subscription(subscription)).inc_by(count);
    }

    pub fn dead_lettered(&self, subscription: &str, count: u64) {
        self.dead_lettered.get_or_create(&Self::subscription(subscription)).inc_by(count);
    }

    pub fn dead_letters_waiting(&self, subscription: &str, count: i64) {
        self.dead_letters_waiting.get_or_create(&Self::subscription(subscription)).set(count);
    }

    /// Lag of a partition this process owns; other members report theirs, so a sum over
    /// instances counts each partition once.
    pub fn lag(&self, subscription: &str, partition: i32, events: Option<i64>) {
        let labels = PartitionLabels { subscription: subscription.to_owned(), partition: partition.to_string() };
        match events {
            Some(events) => {
                self.lag.get_or_create(&labels).set(events);
            }
            None => {
                self.lag.remove(&labels);
            }
        }
    }

    pub fn handler_took(&self, subscription: &str, seconds: f64) {
        self.handler_duration.get_or_create(&Self::subscription(subscription)).observe(seconds);
    }
}
