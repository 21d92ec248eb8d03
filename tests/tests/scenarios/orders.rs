//! The orders module inside the real application, with a customer signed in through users.
//! Inventory is not a module of this binary yet, so the catalogue is unreachable: placing an
//! order must degrade to a 503 that writes nothing, not fail the process.

use bulkhead_tests::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn without_a_catalogue_an_order_is_refused_with_503_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let registration =
        json!({"email": "buyer@example.com", "password": "a perfectly fine passphrase", "display_name": "B"});
    assert_eq!(app.post("/api/v1/users", None, &registration).await.status(), StatusCode::CREATED);
    let token = app.sign_in("buyer@example.com", "a perfectly fine passphrase").await;
    let order = json!({
        "lines": [{"sku": "MUG-001", "quantity": 1}],
        "shipping_address": {"name": "B", "line1": "1 High St", "city": "Leeds", "postal_code": "LS1 1AA", "country": "GB"},
        "payment_method": "pm_card_visa"
    });
    let response = app
        .client
        .post(app.url("/api/v1/orders"))
        .bearer_auth(&token)
        .header("idempotency-key", "first-order")
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "inventory_unavailable");

    let listed: Value = app.get_as("/api/v1/orders", &token).await.json().await.unwrap();
    assert_eq!(listed["data"], json!([]), "nothing was written");
    app.stop().await.unwrap();
}
