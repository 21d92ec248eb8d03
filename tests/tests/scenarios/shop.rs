//! What shopping scenarios share: a signed-in customer, the demo catalogue, placing an order
//! and waiting for its status.

use std::time::Duration;

use bulkhead_tests::{TestApp, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// How long a scenario waits for a step of the saga. Longer than the jobs of a killed process
/// take to be found again (about 70 s: six missed 10-second heartbeats, then the next
/// heartbeat of any worker; ADR 0024), which the scenarios that kill a process can meet.
pub const SAGA_PATIENCE: Duration = Duration::from_secs(90);

pub async fn customer(app: &TestApp, email: &str) -> String {
    let registration = json!({"email": email, "password": "a perfectly fine passphrase", "display_name": "Buyer"});
    assert_eq!(app.post("/api/v1/users", None, &registration).await.status(), StatusCode::CREATED);
    app.sign_in(email, "a perfectly fine passphrase").await
}

/// The demo product with this SKU.
pub async fn product(app: &TestApp, sku: &str) -> Value {
    let page: Value = app.get("/api/v1/products?limit=100").await.json().await.unwrap();
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["sku"] == sku)
        .cloned()
        .unwrap_or_else(|| panic!("no {sku} in {page}"))
}

pub async fn place(app: &TestApp, token: &str, key: &str, sku: &str, quantity: u32, payment_method: &str) -> Value {
    accepted(order_request(app, token, key, sku, quantity, payment_method)).await
}

/// Places an order and returns the answer, whatever it is.
pub async fn try_place(
    app: &TestApp,
    token: &str,
    key: &str,
    sku: &str,
    quantity: u32,
    payment_method: &str,
) -> reqwest::Response {
    order_request(app, token, key, sku, quantity, payment_method).send().await.unwrap()
}

/// `POST /api/v1/orders` for `quantity` of `sku`, ready to send (or to add headers to).
pub fn order_request(
    app: &TestApp,
    token: &str,
    key: &str,
    sku: &str,
    quantity: u32,
    payment_method: &str,
) -> reqwest::RequestBuilder {
    let order = json!({
        "lines": [{"sku": sku, "quantity": quantity}],
        "shipping_address": {"name": "B", "line1": "1 High St", "city": "Leeds", "postal_code": "LS1 1AA", "country": "GB"},
        "payment_method": payment_method
    });
    app.client.post(app.url("/api/v1/orders")).bearer_auth(token).header("idempotency-key", key).json(&order)
}

/// Sends an order request and returns the order it accepted (202).
pub async fn accepted(request: reqwest::RequestBuilder) -> Value {
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    response.json::<Value>().await.unwrap()["data"].clone()
}

/// Waits for `status`; the bound is generous because a loaded CI machine, or a process that
/// just restarted, is slow, and a passing test never waits for it.
pub async fn await_status(app: &TestApp, token: &str, id: &str, status: &str) -> Value {
    eventually(SAGA_PATIENCE, || async {
        let order: Value = app.get_as(&format!("/api/v1/orders/{id}"), token).await.json().await?;
        Ok((order["data"]["status"] == status).then(|| order["data"].clone()))
    })
    .await
    .unwrap_or_else(|_| panic!("order {id} never reached {status}"))
}

/// A product's stock as an admin sees it: (on hand, reserved, available).
pub async fn stock(app: &TestApp, product_id: &str) -> (i64, i64, i64) {
    let product: Value =
        app.get_as(&format!("/api/v1/products/{product_id}"), &app.admin_token()).await.json().await.unwrap();
    let stock = &product["data"]["stock"];
    let count = |field: &str| stock[field].as_i64().unwrap_or_else(|| panic!("no {field} in {product}"));
    (count("on_hand"), count("reserved"), count("available"))
}

/// Waits until the order's payment, as its customer sees it, has `status`.
pub async fn await_payment(app: &TestApp, token: &str, order_id: &str, status: &str) -> Value {
    eventually(SAGA_PATIENCE, || async {
        let page: Value = app.get_as(&format!("/api/v1/payments?order_id={order_id}"), token).await.json().await?;
        let Some(id) = page["data"][0]["id"].as_str() else { return Ok(None) };
        let payment: Value = app.get_as(&format!("/api/v1/payments/{id}"), token).await.json().await?;
        Ok((payment["data"]["status"] == status).then(|| payment["data"].clone()))
    })
    .await
    .unwrap_or_else(|_| panic!("the payment of order {order_id} never reached {status}"))
}
