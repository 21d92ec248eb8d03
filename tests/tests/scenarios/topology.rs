//! What only the split topology has: modules in separate processes behind an edge. Each
//! process serves its own module's routes; a stopped process gives 503 at the edge; a slow
//! callee is cut off at the caller's deadline; the breaker opens on a module that is down and
//! closes when it returns; and orders placed while payments is down wait for it, then are
//! confirmed and charged once.

use std::time::{Duration, Instant};

use bulkhead_tests::{TestApp, Topology, eventually};
use reqwest::StatusCode;
use serde_json::Value;

use crate::shop::{await_payment, await_status, customer, place, try_place};

/// Routes every process serves for itself rather than for its module.
fn per_process(path: &str) -> bool {
    path.starts_with("/health") || path == "/metrics" || path.starts_with("/api/v1/admin/")
}

#[tokio::test]
async fn each_process_serves_exactly_the_routes_its_module_owns() {
    let mut app = TestApp::spawn_on(Topology::Split, &[]).await;
    for module in bulkhead::modules::ALL {
        let address = app.processes().unwrap().address_of(module);
        let url = format!("http://{address}/api/openapi.json?scope=process");
        let spec: Value = app.client.get(&url).send().await.unwrap().json().await.unwrap();
        let paths: Vec<&String> = spec["paths"].as_object().unwrap().keys().filter(|p| !per_process(p)).collect();
        assert!(!paths.is_empty(), "{module} serves no routes");
        for path in paths {
            assert_eq!(bulkhead::edge::owner_of(path), Some(module), "{path} is served by the {module} process");
        }
    }
}

#[tokio::test]
async fn a_stopped_process_behind_the_edge_answers_503_with_retry_after_and_the_rest_still_serves() {
    let mut app = TestApp::spawn_on(Topology::Split, &[]).await;
    let token = customer(&app, "watcher@example.com").await;
    let status = app.processes().unwrap().terminate("payments").await;
    assert!(status.success(), "payments drained and stopped cleanly: {status}");

    let response = app.get_as("/api/v1/payments", &token).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "5");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "module_unavailable", "{body}");
    assert!(body["error"]["request_id"].is_string(), "{body}");

    assert_eq!(app.get("/api/v1/products").await.status(), StatusCode::OK, "other modules are untouched");
    let ready: Value = app.get("/health/ready").await.json().await.unwrap();
    assert_eq!(ready["data"]["status"], "ready", "{ready}");
    assert!(ready["data"]["checks"]["remote.payments"].as_str().unwrap().starts_with("unreachable"), "{ready}");

    app.processes().unwrap().restart("payments").await;
    assert_eq!(app.get_as("/api/v1/payments", &token).await.status(), StatusCode::OK);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn orders_placed_while_payments_is_down_wait_for_it_and_are_charged_once_when_it_returns() {
    let mut app = TestApp::spawn_on(Topology::Split, &[]).await;
    let token = customer(&app, "patient@example.com").await;
    let mut orders = Vec::new();
    for n in 0..3 {
        orders.push(place(&app, &token, &format!("before-{n}"), "MUG-001", 1, "pm_card_visa").await);
    }
    // Killed mid-saga: some of those are being paid for right now.
    app.processes().unwrap().kill("payments").await;
    for n in 0..3 {
        orders.push(place(&app, &token, &format!("during-{n}"), "MUG-001", 1, "pm_card_visa").await);
    }
    for order in &orders[3..] {
        let id = order["id"].as_str().unwrap();
        let waiting = await_status(&app, &token, id, "awaiting_payment").await;
        assert!(waiting["cancellation"].is_null(), "{waiting}");
    }

    app.processes().unwrap().restart("payments").await;
    for order in &orders {
        let id = order["id"].as_str().unwrap();
        let confirmed = await_status(&app, &token, id, "confirmed").await;
        let payment = await_payment(&app, &token, id, "captured").await;
        assert_eq!(payment["balances"]["captured"], confirmed["total"]["amount"]);
        let captures = payment["ledger"].as_array().unwrap().iter().filter(|e| e["kind"] == "capture").count();
        assert_eq!(captures, 1, "charged once: {payment}");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_frozen_inventory_is_cut_off_at_the_quote_deadline_and_nothing_is_ordered() {
    let mut app = TestApp::spawn_on(Topology::Split, &[]).await;
    let token = customer(&app, "hurried@example.com").await;
    app.processes().unwrap().freeze("inventory");

    let started = Instant::now();
    let response = try_place(&app, &token, "frozen-1", "MUG-001", 1, "pm_card_visa").await;
    let waited = started.elapsed();
    app.processes().unwrap().thaw("inventory");
    let status = response.status();
    let retry_after = response.headers().contains_key("retry-after");
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(retry_after);
    assert_eq!(body["error"]["code"], "inventory_unavailable", "{body}");
    // Orders asks inventory for a quote with a 3-second deadline; the answer comes then,
    // not after the request's own 30 seconds.
    assert!(waited < Duration::from_secs(10), "waited {waited:?}");

    let page: Value = app.get_as("/api/v1/orders", &token).await.json().await.unwrap();
    assert_eq!(page["data"].as_array().map(Vec::len), Some(0), "nothing was ordered: {page}");
    let response = try_place(&app, &token, "thawed-1", "MUG-001", 1, "pm_card_visa").await;
    assert_eq!(response.status(), StatusCode::ACCEPTED, "inventory answers again");
}

/// The `bulkhead_port_breaker_state` of calls to `callee` on the process at `address`.
async fn breaker_state(app: &TestApp, address: std::net::SocketAddr, callee: &str) -> Option<i64> {
    let metrics = app.client.get(format!("http://{address}/metrics")).send().await.ok()?.text().await.ok()?;
    let prefix = format!("bulkhead_port_breaker_state{{callee=\"{callee}\"}} ");
    metrics.lines().find_map(|line| line.strip_prefix(prefix.as_str())).and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn the_breaker_opens_on_an_inventory_that_is_down_and_closes_when_it_returns() {
    let flags = ["--port-breaker-failures", "3", "--port-breaker-open-for", "1s"];
    let mut app = TestApp::spawn_on(Topology::Split, &flags).await;
    let token = customer(&app, "persistent@example.com").await;
    let orders_process = app.processes().unwrap().address_of("orders");
    app.processes().unwrap().kill("inventory").await;

    for n in 0..4 {
        let response = try_place(&app, &token, &format!("down-{n}"), "MUG-001", 1, "pm_card_visa").await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(breaker_state(&app, orders_process, "inventory").await, Some(1), "open after three failures");

    app.processes().unwrap().restart("inventory").await;
    let placed = eventually(Duration::from_secs(20), || async {
        let response = try_place(&app, &token, "back-1", "MUG-001", 1, "pm_card_visa").await;
        Ok((response.status() == StatusCode::ACCEPTED).then_some(()))
    })
    .await;
    assert!(placed.is_ok(), "placing works again once the breaker lets a probe through");
    assert_eq!(breaker_state(&app, orders_process, "inventory").await, Some(0), "closed again");
}
