//! The order saga's throughput and latency, Prometheus-named: orders whose placement settled,
//! by outcome, and how long it took from placing.

use orders_contract::OrderStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    /// `confirmed`, `rejected` or `cancelled`.
    outcome: &'static str,
}

type Durations = Family<OutcomeLabels, Histogram, fn() -> Histogram>;

/// Counted whether or not they are registered, so the service never checks.
#[derive(Debug, Clone)]
pub(crate) struct SagaMetrics {
    settled: Family<OutcomeLabels, Counter>,
    durations: Durations,
}

impl Default for SagaMetrics {
    fn default() -> Self {
        // 100 ms to about 27 minutes: past the default payment timeout (15 minutes).
        Self {
            settled: Family::default(),
            durations: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.1, 2.0, 15))),
        }
    }
}

impl SagaMetrics {
    pub(crate) fn register(&self, metrics: &platform::metrics::Metrics) {
        metrics.register(
            "bulkhead_orders_saga_settled",
            "Orders whose placement saga settled, by outcome (confirmed, rejected, cancelled before confirmation)",
            self.settled.clone(),
        );
        metrics.register(
            "bulkhead_orders_saga_duration_seconds",
            "Time from placing an order to its saga settling, by outcome",
            self.durations.clone(),
        );
    }

    /// Records a placement settled with `outcome` (see [`settlement`]), `seconds` after the
    /// order was placed.
    pub(crate) fn settled(&self, outcome: &'static str, seconds: f64) {
        let labels = OutcomeLabels { outcome };
        self.settled.get_or_create(&labels).inc();
        self.durations.get_or_create(&labels).observe(seconds.max(0.0));
    }
}

/// The outcome with which a move from `from` to `to` settles an order's placement, if it does:
/// confirmed, rejected, or cancelled before it was confirmed. Later moves (shipping, a refund
/// after confirmation) are another story.
pub(crate) fn settlement(from: OrderStatus, to: OrderStatus) -> Option<&'static str> {
    match (from, to) {
        (_, OrderStatus::Confirmed) => Some("confirmed"),
        (_, OrderStatus::Rejected) => Some("rejected"),
        (OrderStatus::Pending | OrderStatus::AwaitingPayment, OrderStatus::Cancelled) => Some("cancelled"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_moves_that_settle_a_placement_count() {
        assert_eq!(settlement(OrderStatus::AwaitingPayment, OrderStatus::Confirmed), Some("confirmed"));
        assert_eq!(settlement(OrderStatus::Pending, OrderStatus::Rejected), Some("rejected"));
        assert_eq!(settlement(OrderStatus::AwaitingPayment, OrderStatus::Cancelled), Some("cancelled"));
        // A paid order cancelled later, and shipping, settle nothing.
        assert_eq!(settlement(OrderStatus::Confirmed, OrderStatus::Cancelled), None);
        assert_eq!(settlement(OrderStatus::Confirmed, OrderStatus::Shipped), None);
    }

    #[test]
    fn settled_placements_are_counted_and_timed_by_outcome() {
        let metrics = SagaMetrics::default();
        metrics.settled("confirmed", 2.0);
        metrics.settled("cancelled", 900.0);
        let registry = platform::metrics::Metrics::new();
        metrics.register(&registry);
        let text = registry.render();
        for outcome in ["confirmed", "cancelled"] {
            assert!(text.contains(&format!("bulkhead_orders_saga_settled_total{{outcome=\"{outcome}\"}} 1")), "{text}");
            assert!(
                text.contains(&format!("bulkhead_orders_saga_duration_seconds_count{{outcome=\"{outcome}\"}} 1")),
                "{text}"
            );
        }
    }
}
