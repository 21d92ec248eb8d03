//! The whole order saga in the real application, through HTTP: orders, inventory and payments
//! with the sandbox gateway. A paid order is confirmed with its stock taken; a declined card
//! cancels the order and frees its stock; a paid order cancelled by its customer is refunded
//! and restocked.

use std::time::Duration;

use bulkhead_tests::{TestApp, Topology, eventually};
use reqwest::StatusCode;
use serde_json::Value;

use crate::shop::{await_payment, await_status, customer, place, product, stock};

async fn a_paid_order_is_confirmed_with_its_stock_taken_and_its_payment_captured(topology: Topology) {
    let app = TestApp::spawn_on(topology, &[]).await;
    let token = customer(&app, "payer@example.com").await;
    let mug = product(&app, "MUG-001").await;
    let mug_id = mug["id"].as_str().unwrap();
    let (on_hand, reserved, _) = stock(&app, mug_id).await;

    let order = place(&app, &token, "paid-1", "MUG-001", 3, "pm_card_visa").await;
    let id = order["id"].as_str().unwrap();
    let confirmed = await_status(&app, &token, id, "confirmed").await;
    let payment = await_payment(&app, &token, id, "captured").await;
    assert_eq!(payment["amount"], confirmed["total"], "the order's total was taken");
    assert_eq!(payment["balances"]["captured"], confirmed["total"]["amount"]);

    // Inventory commits when it hears of the confirmation: the units leave on-hand.
    eventually(Duration::from_secs(20), || async {
        Ok((stock(&app, mug_id).await == (on_hand - 3, reserved, on_hand - 3 - reserved)).then_some(()))
    })
    .await
    .expect("the stock was never committed");
    app.stop().await.unwrap();
}

async fn a_declined_card_cancels_the_order_and_frees_its_stock(topology: Topology) {
    let app = TestApp::spawn_on(topology, &[]).await;
    let token = customer(&app, "declined@example.com").await;
    let tee = product(&app, "TEE-001").await;
    let tee_id = tee["id"].as_str().unwrap();
    let before = stock(&app, tee_id).await;

    let order = place(&app, &token, "declined-1", "TEE-001", 2, "pm_card_declined").await;
    let id = order["id"].as_str().unwrap();
    let cancelled = await_status(&app, &token, id, "cancelled").await;
    assert_eq!(cancelled["cancellation"]["reason"], "payment_failed", "{cancelled}");
    assert_eq!(cancelled["cancellation"]["detail"], "card_declined");
    let payment = await_payment(&app, &token, id, "failed").await;
    assert_eq!(payment["failure"]["code"], "card_declined");
    assert_eq!(payment["balances"]["captured"], 0);

    eventually(Duration::from_secs(20), || async { Ok((stock(&app, tee_id).await == before).then_some(())) })
        .await
        .expect("the reservation was never released");
    app.stop().await.unwrap();
}

async fn a_paid_order_cancelled_by_its_customer_is_refunded_and_restocked(topology: Topology) {
    let app = TestApp::spawn_on(topology, &[]).await;
    let token = customer(&app, "regret@example.com").await;
    let mug = product(&app, "MUG-001").await;
    let mug_id = mug["id"].as_str().unwrap();
    let before = stock(&app, mug_id).await;

    let order = place(&app, &token, "regret-1", "MUG-001", 2, "pm_card_visa").await;
    let id = order["id"].as_str().unwrap();
    let confirmed = await_status(&app, &token, id, "confirmed").await;
    await_payment(&app, &token, id, "captured").await;
    eventually(Duration::from_secs(20), || async { Ok((stock(&app, mug_id).await.0 == before.0 - 2).then_some(())) })
        .await
        .expect("the stock was never committed");

    let response = app.post(&format!("/api/v1/orders/{id}/cancel"), Some(&token), &Value::Null).await;
    assert_eq!(response.status(), StatusCode::OK);
    let refunded = await_payment(&app, &token, id, "refunded").await;
    assert_eq!(refunded["balances"]["refunded"], confirmed["total"]["amount"]);
    assert_eq!(refunded["balances"]["net"], 0);
    assert_eq!(refunded["refunds"][0]["reason"], "order_cancelled");

    eventually(Duration::from_secs(20), || async {
        let order: Value = app.get_as(&format!("/api/v1/orders/{id}"), &token).await.json().await?;
        Ok((order["data"]["refunded"] == confirmed["total"]).then_some(()))
    })
    .await
    .expect("orders never heard of the refund");
    eventually(Duration::from_secs(20), || async { Ok((stock(&app, mug_id).await == before).then_some(())) })
        .await
        .expect("the units never came back");
    app.stop().await.unwrap();
}

on_every_topology!(
    a_paid_order_is_confirmed_with_its_stock_taken_and_its_payment_captured,
    a_declined_card_cancels_the_order_and_frees_its_stock,
    a_paid_order_cancelled_by_its_customer_is_refunded_and_restocked,
);
