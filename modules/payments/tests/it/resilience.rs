//! The gateway failing: timeouts and 5xx retried with the same idempotency key (one charge),
//! the circuit breaker opening and closing, and reconciliation of what the gateway left
//! undecided.

use std::time::Duration;

use platform::testing::eventually;
use reqwest::Method;

use crate::support::{Harness, ledger_kinds, read};

#[tokio::test]
async fn a_gateway_timeout_is_retried_with_the_same_key_and_charges_once() {
    let harness = Harness::start().await;
    let (order_id, _) = harness.request_payment("pm_card_timeout_once", 2999).await;

    let payment = harness.await_status(order_id, "captured").await;
    harness.settle().await;
    let key = format!("{}:authorize", payment["id"].as_str().unwrap());
    assert!(harness.sandbox.requests(&key).await.unwrap() >= 2, "the first answer was lost, so it was asked again");
    assert_eq!(harness.sandbox.executions(&key).await.unwrap(), 1, "but authorized once");
    assert_eq!(harness.events("payments.payment_captured", order_id).await.len(), 1);
    assert_eq!(ledger_kinds(&payment), ["authorization", "capture"]);
    harness.assert_ledger_balances().await;
}

#[tokio::test]
async fn a_gateway_error_is_retried_and_then_succeeds() {
    let harness = Harness::start().await;
    let (order_id, _) = harness.request_payment("pm_card_error_once", 2999).await;

    let payment = harness.await_status(order_id, "captured").await;
    let key = format!("{}:authorize", payment["id"].as_str().unwrap());
    assert!(harness.sandbox.requests(&key).await.unwrap() >= 2, "the 503 was retried");
    assert_eq!(harness.sandbox.executions(&key).await.unwrap(), 1);
}

async fn breaker(harness: &Harness) -> String {
    let (status, body) =
        read(harness.call(Method::GET, "/api/v1/payments/gateway", Some(&harness.admin_token), None).await).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["breaker"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_breaker_opens_under_failures_keeps_payments_pending_and_closes_after_recovery() {
    let harness = Harness::start().await;
    harness.sandbox.set_outage(true).await.unwrap();
    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(harness.request_payment("pm_card_visa", 1000).await.0);
    }

    eventually(Duration::from_secs(15), || async { Ok((breaker(&harness).await == "open").then_some(())) })
        .await
        .expect("the breaker never opened");
    for order_id in &orders {
        let payment = harness.payment_of(*order_id).await;
        assert_eq!(payment["status"], "pending", "an outage does not fail payments: {payment}");
        assert!(harness.events("payments.payment_failed", *order_id).await.is_empty());
    }

    harness.sandbox.set_outage(false).await.unwrap();
    for order_id in &orders {
        harness.await_status(*order_id, "captured").await;
    }
    assert_eq!(breaker(&harness).await, "closed");
    for order_id in &orders {
        let payment = harness.payment_of(*order_id).await;
        let key = format!("{}:authorize", payment["id"].as_str().unwrap());
        assert_eq!(harness.sandbox.executions(&key).await.unwrap(), 1);
    }
    harness.assert_ledger_balances().await;
}

#[tokio::test]
async fn reconciliation_settles_a_payment_the_gateway_never_called_back_about() {
    let harness = Harness::start().await;
    let (order_id, _) = harness.request_payment("pm_card_async_silent", 2500).await;

    let pending = harness.payment_of(order_id).await;
    assert!(pending["status"] == "pending" || pending["status"] == "captured");
    let payment = harness.await_status(order_id, "captured").await;
    assert_eq!(ledger_kinds(&payment), ["authorization", "capture"]);
    let mut db = harness.database.admin_connection().await.unwrap();
    let webhooks: i64 =
        sqlx::query_scalar("SELECT count(*) FROM payments.webhook_events").fetch_one(&mut db).await.unwrap();
    assert_eq!(webhooks, 0, "no webhook came: reconciliation found it");
    assert_eq!(harness.events("payments.payment_captured", order_id).await.len(), 1);
}

#[tokio::test]
async fn a_refund_whose_job_gave_up_during_an_outage_is_made_once_the_gateway_is_back() {
    let mut config = crate::support::config();
    config.job_attempts = 3;
    let harness = Harness::start_with(config).await;
    let (order_id, _) = harness.request_payment("pm_card_visa", 2000).await;
    let payment = harness.await_status(order_id, "captured").await;
    let id = payment["id"].as_str().unwrap();

    harness.sandbox.set_outage(true).await.unwrap();
    let (status, refund) = harness.refund(id, serde_json::json!({"amount": 500, "reason": "outage"})).await;
    assert_eq!(status, 202, "{refund}");
    let refund_id = refund["data"]["id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(20), || async {
        let mut db = harness.database.admin_connection().await?;
        let gave_up: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM apalis.jobs WHERE job_type = 'payments.refund'
                              AND convert_from(job, 'UTF8')::jsonb->>'refund_id' = $1 AND status = 'Failed' AND attempts >= max_attempts)",
        )
        .bind(&refund_id)
        .fetch_one(&mut db)
        .await?;
        Ok(gave_up.then_some(()))
    })
    .await
    .expect("the refund job never gave up");
    assert_eq!(harness.payment(id.parse().unwrap()).await["refunds"][0]["status"], "pending");

    harness.sandbox.set_outage(false).await.unwrap();
    let refunded = harness.await_status(order_id, "partially_refunded").await;
    assert_eq!(refunded["refunds"][0]["status"], "succeeded");
    assert_eq!(harness.sandbox.settled(id.parse().unwrap()).await.unwrap(), Some((2000, 500)));
    harness.assert_ledger_balances().await;
}
