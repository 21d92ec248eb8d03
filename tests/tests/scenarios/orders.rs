//! Orders and inventory in the real application, through HTTP: a customer signs in through
//! users, places an order from the demo catalogue, and the saga reserves its stock — or
//! rejects it with reasons when there is not enough, holding nothing.

use bulkhead_tests::{TestApp, Topology};
use serde_json::Value;

use crate::shop::{await_status, customer, place, product};

async fn a_placed_order_reaches_awaiting_payment_with_its_stock_reserved(topology: Topology) {
    let app = TestApp::spawn_on(topology, &[]).await;
    let token = customer(&app, "buyer@example.com").await;
    let mug = product(&app, "MUG-001").await;
    let available_before = mug["stock"]["available"].as_i64().unwrap();

    // The gateway keeps this payment "processing" (no webhook), so the order waits for it.
    let order = place(&app, &token, "order-1", "MUG-001", 2, "pm_card_async_silent").await;
    assert_eq!(order["status"], "pending");
    assert_eq!(order["lines"][0]["unit_price"], mug["price"], "priced by the catalogue");
    let awaiting = await_status(&app, &token, order["id"].as_str().unwrap(), "awaiting_payment").await;
    assert!(awaiting["pay_by"].is_string());

    let mug_now: Value =
        app.get(&format!("/api/v1/products/{}", mug["id"].as_str().unwrap())).await.json().await.unwrap();
    assert_eq!(
        mug_now["data"]["stock"]["available"].as_i64().unwrap(),
        available_before - 2,
        "two units held for the order"
    );
    app.stop().await.unwrap();
}

async fn an_order_for_more_than_is_in_stock_is_rejected_with_reasons_and_holds_nothing(topology: Topology) {
    let app = TestApp::spawn_on(topology, &[]).await;
    let token = customer(&app, "eager@example.com").await;
    let puzzle = product(&app, "PUZZ-001").await;
    let in_stock = puzzle["stock"]["available"].as_i64().unwrap();

    let quantity = u32::try_from(in_stock + 1).unwrap();
    let order = place(&app, &token, "too-many", "PUZZ-001", quantity, "pm_card_visa").await;
    let rejected = await_status(&app, &token, order["id"].as_str().unwrap(), "rejected").await;
    let reason = &rejected["rejected_lines"][0];
    assert_eq!(reason["code"], "insufficient_stock");
    assert_eq!((reason["requested"].as_i64(), reason["available"].as_i64()), (Some(in_stock + 1), Some(in_stock)));

    let puzzle_now: Value =
        app.get(&format!("/api/v1/products/{}", puzzle["id"].as_str().unwrap())).await.json().await.unwrap();
    assert_eq!(puzzle_now["data"]["stock"]["available"].as_i64(), Some(in_stock), "nothing stays reserved");
    app.stop().await.unwrap();
}

on_every_topology!(
    a_placed_order_reaches_awaiting_payment_with_its_stock_reserved,
    an_order_for_more_than_is_in_stock_is_rejected_with_reasons_and_holds_nothing,
);
