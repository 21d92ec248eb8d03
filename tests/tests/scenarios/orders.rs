//! Orders and inventory in the real application, through HTTP: a customer signs in through
//! users, places an order from the demo catalogue, and the saga reserves its stock — or
//! rejects it with reasons when there is not enough, holding nothing.

use std::time::Duration;

use bulkhead_tests::{TestApp, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn customer(app: &TestApp, email: &str) -> String {
    let registration = json!({"email": email, "password": "a perfectly fine passphrase", "display_name": "Buyer"});
    assert_eq!(app.post("/api/v1/users", None, &registration).await.status(), StatusCode::CREATED);
    app.sign_in(email, "a perfectly fine passphrase").await
}

/// The demo product with this SKU.
async fn product(app: &TestApp, sku: &str) -> Value {
    let page: Value = app.get("/api/v1/products?limit=100").await.json().await.unwrap();
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["sku"] == sku)
        .cloned()
        .unwrap_or_else(|| panic!("no {sku} in {page}"))
}

async fn place(app: &TestApp, token: &str, key: &str, sku: &str, quantity: u32) -> Value {
    let order = json!({
        "lines": [{"sku": sku, "quantity": quantity}],
        "shipping_address": {"name": "B", "line1": "1 High St", "city": "Leeds", "postal_code": "LS1 1AA", "country": "GB"},
        "payment_method": "pm_card_visa"
    });
    let response = app
        .client
        .post(app.url("/api/v1/orders"))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    response.json::<Value>().await.unwrap()["data"].clone()
}

async fn await_status(app: &TestApp, token: &str, id: &str, status: &str) -> Value {
    eventually(Duration::from_secs(20), || async {
        let order: Value = app.get_as(&format!("/api/v1/orders/{id}"), token).await.json().await?;
        Ok((order["data"]["status"] == status).then(|| order["data"].clone()))
    })
    .await
    .unwrap_or_else(|_| panic!("order {id} never reached {status}"))
}

#[tokio::test]
async fn a_placed_order_reaches_awaiting_payment_with_its_stock_reserved() {
    let app = TestApp::spawn().await;
    let token = customer(&app, "buyer@example.com").await;
    let mug = product(&app, "MUG-001").await;
    let available_before = mug["stock"]["available"].as_i64().unwrap();

    let order = place(&app, &token, "order-1", "MUG-001", 2).await;
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

#[tokio::test]
async fn an_order_for_more_than_is_in_stock_is_rejected_with_reasons_and_holds_nothing() {
    let app = TestApp::spawn().await;
    let token = customer(&app, "eager@example.com").await;
    let puzzle = product(&app, "PUZZ-001").await;
    let in_stock = puzzle["stock"]["available"].as_i64().unwrap();

    let order = place(&app, &token, "too-many", "PUZZ-001", u32::try_from(in_stock + 1).unwrap()).await;
    let rejected = await_status(&app, &token, order["id"].as_str().unwrap(), "rejected").await;
    let reason = &rejected["rejected_lines"][0];
    assert_eq!(reason["code"], "insufficient_stock");
    assert_eq!((reason["requested"].as_i64(), reason["available"].as_i64()), (Some(in_stock + 1), Some(in_stock)));

    let puzzle_now: Value =
        app.get(&format!("/api/v1/products/{}", puzzle["id"].as_str().unwrap())).await.json().await.unwrap();
    assert_eq!(puzzle_now["data"]["stock"]["available"].as_i64(), Some(in_stock), "nothing stays reserved");
    app.stop().await.unwrap();
}
