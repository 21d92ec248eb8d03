//! Traces across modules: the app exports its spans over OTLP to a receiver in this process,
//! and one order, placed with a `traceparent` and confirmed, is one trace from the request
//! through orders, inventory, payments (jobs and gateway calls included) and notifications.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::OnceLock;
use std::time::Duration;

use bulkhead_tests::{TestApp, Topology, eventually};
use opentelemetry_sdk::trace::Sampler;
use platform::telemetry::{self, OtlpTraces, Telemetry};
use platform::testing::otlp::{Collector, ReceivedSpan};

use crate::shop::{accepted, await_status, customer, order_request};

/// The receiver and the process's one subscriber, exporting to it. Only traces a test starts
/// (a sampled `traceparent` on its request) are exported, so the other tests of this binary,
/// running alongside, add nothing to the receiver.
fn exporting() -> &'static (Collector, Telemetry) {
    static EXPORTING: OnceLock<(Collector, Telemetry)> = OnceLock::new();
    EXPORTING.get_or_init(|| {
        let collector = Collector::start().unwrap();
        let modules: Vec<&'static str> = bulkhead::modules::compiled().iter().map(|d| d.schema.name).collect();
        let traces = OtlpTraces::to_endpoint(collector.traces_url(), &modules)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)));
        let telemetry = telemetry::init(None, telemetry::LogTarget::Stdout, Some(traces)).unwrap();
        assert!(telemetry.exports_traces(), "this test binary had a subscriber already");
        (collector, telemetry)
    })
}

fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

const MODULES_OF_AN_ORDER: [&str; 4] = ["orders", "inventory", "payments", "notifications"];

/// Span names (`otel.name` where set) every confirmed order's trace holds: the request, the
/// outbox appends and their handlers, the payment jobs and their gateway calls, the email.
const STEPS_OF_AN_ORDER: [&str; 8] = [
    "POST /api/v1/orders",
    "bus.append",
    "bus.handle",
    "payments.authorize",
    "gateway authorize",
    "payments.capture",
    "gateway capture",
    "notifications.email",
];

fn modules(spans: &[ReceivedSpan]) -> BTreeSet<&str> {
    spans.iter().filter_map(|span| span.attribute(telemetry::MODULE_ATTRIBUTE)).collect()
}

fn complete(spans: &[ReceivedSpan]) -> bool {
    let names: HashSet<&str> = spans.iter().map(|span| span.name.as_str()).collect();
    let modules = modules(spans);
    STEPS_OF_AN_ORDER.iter().all(|step| names.contains(step)) && MODULES_OF_AN_ORDER.iter().all(|m| modules.contains(m))
}

#[tokio::test]
async fn an_order_placed_and_confirmed_is_one_trace_through_every_module_it_touched() {
    let (collector, telemetry) = exporting();
    let app = TestApp::spawn().await;
    let token = customer(&app, "traced@example.com").await;
    let (trace_id, caller_span) = (random_hex(16), random_hex(8));

    let request = order_request(&app, &token, "traced-1", "MUG-001", 1, "pm_card_visa")
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"));
    let order = accepted(request).await;
    let id = order["id"].as_str().unwrap().to_owned();
    await_status(&app, &token, &id, "confirmed").await;
    eventually(Duration::from_secs(30), || async {
        telemetry.flush().await?;
        Ok(complete(&collector.trace(&trace_id)).then_some(()))
    })
    .await
    .unwrap_or_else(|_| panic!("the trace never covered the order: {:#?}", collector.trace(&trace_id)));
    app.stop().await.unwrap();
    telemetry.flush().await.unwrap();

    let spans = collector.trace(&trace_id);
    let by_id: HashMap<&str, &ReceivedSpan> = spans.iter().map(|span| (span.span_id.as_str(), span)).collect();
    let parent = |span: &ReceivedSpan| by_id.get(span.parent_span_id.as_str()).copied();

    // One tree: the request span is the caller's child, every other span has its parent here.
    let roots: Vec<&ReceivedSpan> = spans.iter().filter(|span| parent(span).is_none()).collect();
    assert!(
        roots.len() == 1 && roots[0].parent_span_id == caller_span && roots[0].name == "POST /api/v1/orders",
        "only the request continues the caller's span: {roots:#?}"
    );
    assert_eq!(roots[0].attribute("http.route"), Some("/api/v1/orders"));
    assert_eq!(roots[0].attribute(telemetry::MODULE_ATTRIBUTE), Some("orders"));
    assert!(roots[0].service == telemetry::DEFAULT_SERVICE_NAME, "{:?}", roots[0].service);

    // Handlers continue the append that published their event, in other modules.
    let handlers: Vec<&ReceivedSpan> = spans.iter().filter(|span| span.name == "bus.handle").collect();
    for handler in &handlers {
        assert_eq!(parent(handler).map(|p| p.name.as_str()), Some("bus.append"), "{handler:#?}");
    }
    let handling_modules: BTreeSet<&str> =
        handlers.iter().filter_map(|span| span.attribute(telemetry::MODULE_ATTRIBUTE)).collect();
    for module in MODULES_OF_AN_ORDER {
        assert!(handling_modules.contains(module), "{module} handled none of the order's events: {handling_modules:?}");
    }

    // Each gateway call happens inside the job that asked for it.
    for (call, job) in [("gateway authorize", "payments.authorize"), ("gateway capture", "payments.capture")] {
        let call = spans.iter().find(|span| span.name == call).unwrap();
        let mut ancestor = parent(call);
        while let Some(span) = ancestor.filter(|span| span.name != job) {
            ancestor = parent(span);
        }
        assert!(ancestor.is_some(), "{} is not inside a {job} job", call.name);
    }

    // Nothing that names this order was exported in another trace.
    let elsewhere: Vec<ReceivedSpan> = collector
        .spans()
        .into_iter()
        .filter(|span| span.attribute("order_id") == Some(id.as_str()) && span.trace_id != trace_id)
        .collect();
    assert!(elsewhere.is_empty(), "spans of the order outside its trace: {elsewhere:#?}");
    assert!(spans.iter().any(|span| span.attribute("order_id") == Some(id.as_str())));
}

/// The processes of the split, as their spans name them (`OTEL_SERVICE_NAME`).
const PROCESSES_OF_AN_ORDER: [&str; 4] =
    ["bulkhead-orders", "bulkhead-inventory", "bulkhead-payments", "bulkhead-notifications"];

#[tokio::test]
async fn on_the_split_an_order_is_one_trace_across_every_process_it_touched() {
    // A receiver of this test's own: the processes export to it over OTLP/HTTP, each under
    // its own service name, and only traces a caller started (the sampler follows the parent).
    let collector = Collector::start().unwrap();
    let endpoint = collector.endpoint();
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_TRACES_SAMPLER", "parentbased_always_off")];
    let app = TestApp::spawn_with_env(Topology::Split, &[], &env).await;
    let token = customer(&app, "traced-split@example.com").await;
    let (trace_id, caller_span) = (random_hex(16), random_hex(8));

    let request = order_request(&app, &token, "traced-split-1", "MUG-001", 1, "pm_card_visa")
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"));
    let order = accepted(request).await;
    let id = order["id"].as_str().unwrap().to_owned();
    await_status(&app, &token, &id, "confirmed").await;
    // The confirmation email is the last step; stopping the processes flushes their spans.
    eventually(Duration::from_secs(30), || async {
        let services: BTreeSet<String> = collector.trace(&trace_id).into_iter().map(|s| s.service).collect();
        Ok(services.contains("bulkhead-notifications").then_some(()))
    })
    .await
    .ok();
    app.stop().await.unwrap();

    let spans = collector.trace(&trace_id);
    let services: BTreeSet<&str> = spans.iter().map(|span| span.service.as_str()).collect();
    for process in PROCESSES_OF_AN_ORDER {
        assert!(services.contains(process), "no span of the {process} process in the trace: {services:?}");
    }
    assert!(complete(&spans), "the trace misses steps: {:#?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());

    // One tree across the processes: only the edge's request continues the caller's span;
    // the quote orders asks of inventory's process is a child of the port call that made it.
    let by_id: HashMap<&str, &ReceivedSpan> = spans.iter().map(|span| (span.span_id.as_str(), span)).collect();
    let roots: Vec<&ReceivedSpan> =
        spans.iter().filter(|span| !by_id.contains_key(span.parent_span_id.as_str())).collect();
    assert!(
        roots.len() == 1 && roots[0].parent_span_id == caller_span && roots[0].service == "bulkhead-orders",
        "only the edge's request continues the caller's span: {roots:#?}"
    );
    let quote = spans
        .iter()
        .find(|span| span.service == "bulkhead-inventory" && span.name.contains("/internal/inventory/v1/quote"))
        .unwrap_or_else(|| panic!("inventory's process never served the quote in this trace: {spans:#?}"));
    let caller = by_id.get(quote.parent_span_id.as_str()).expect("the quote's parent is in the trace");
    assert_eq!(caller.service, "bulkhead-orders", "{caller:#?}");
}
