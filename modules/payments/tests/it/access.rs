//! Who may read payments and refund them.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{Harness, read};

#[tokio::test]
async fn customers_see_their_own_payments_and_admins_see_all() {
    let harness = Harness::start().await;
    let (order_id, _) = harness.request_payment("pm_card_visa", 2999).await;
    let payment = harness.await_status(order_id, "captured").await;
    let path = format!("/api/v1/payments/{}", payment["id"].as_str().unwrap());

    let (status, own) = read(harness.call(Method::GET, &path, Some(&harness.customer_token), None).await).await;
    assert_eq!(status, StatusCode::OK, "{own}");
    assert_eq!(own["data"]["order_id"], order_id.to_string());
    let (status, listed) = read(
        harness
            .call(Method::GET, format!("/api/v1/payments?order_id={order_id}"), Some(&harness.customer_token), None)
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);

    let stranger = harness.stranger();
    let (status, _) = read(harness.call(Method::GET, &path, Some(&stranger), None).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, theirs) =
        read(harness.call(Method::GET, format!("/api/v1/payments?order_id={order_id}"), Some(&stranger), None).await)
            .await;
    assert!(theirs["data"].as_array().unwrap().is_empty());
    let (status, _) = read(
        harness
            .call(Method::GET, format!("/api/v1/payments?user_id={}", harness.customer), Some(&stranger), None)
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, _) = read(harness.call(Method::GET, &path, None, None).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = read(harness.call(Method::GET, "/api/v1/payments", None, None).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn only_admins_refund_or_see_the_gateway() {
    let harness = Harness::start().await;
    let (order_id, _) = harness.request_payment("pm_card_visa", 2999).await;
    let payment = harness.await_status(order_id, "captured").await;
    let refunds = format!("/api/v1/payments/{}/refunds", payment["id"].as_str().unwrap());

    for token in [Some(harness.customer_token.as_str()), None] {
        let mut request = harness.client.post(harness.served.url(&refunds)).header("idempotency-key", "k1");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.json(&json!({"reason": "mine"})).send().await.unwrap();
        let expected = if token.is_some() { StatusCode::FORBIDDEN } else { StatusCode::UNAUTHORIZED };
        assert_eq!(response.status(), expected);
        let (status, _) = read(harness.call(Method::GET, "/api/v1/payments/gateway", token, None).await).await;
        assert_eq!(status, expected);
    }
    let (status, body) =
        read(harness.call(Method::POST, &refunds, Some(&harness.admin_token), Some(json!({"reason": "no key"}))).await)
            .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "idempotency_key_required");
}
