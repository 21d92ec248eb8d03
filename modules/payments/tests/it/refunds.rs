//! Refunds: partial ones up to what was captured, admin and order-driven, never more than once.

use orders_contract::events::RefundReason;
use serde_json::json;
use uuid::Uuid;

use crate::support::{Harness, code, ledger_kinds};

#[tokio::test]
async fn partial_refunds_go_up_to_the_captured_amount_and_no_further() {
    let harness = Harness::start().await;
    let (order_id, _) = harness.request_payment("pm_card_visa", 2999).await;
    let payment = harness.await_status(order_id, "captured").await;
    let id = payment["id"].as_str().unwrap();

    let (status, first) = harness.refund(id, json!({"amount": 1000, "reason": "scratched"})).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["data"]["status"], "pending");
    let (status, body) = harness.refund(id, json!({"amount": 2000, "reason": "too much"})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(code(&body), "refund_exceeds_captured");
    assert_eq!(body["error"]["details"]["refundable"], 1999);

    let payment = harness.await_status(order_id, "partially_refunded").await;
    assert_eq!(payment["balances"]["refunded"], 1000);
    assert_eq!(payment["refundable"], 1999);

    let (status, rest) = harness.refund(id, json!({"reason": "the rest"})).await;
    assert_eq!(status, 202, "{rest}");
    assert_eq!(rest["data"]["amount"], 1999);
    let payment = harness.await_status(order_id, "refunded").await;
    assert_eq!(payment["balances"], json!({"held": 0, "captured": 2999, "refunded": 2999, "net": 0}));
    assert_eq!(ledger_kinds(&payment), ["authorization", "capture", "refund", "refund"]);

    let (status, body) = harness.refund(id, json!({"amount": 1, "reason": "one more"})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["details"]["refundable"], 0);

    harness.settle().await;
    let refunded = harness.events("payments.payment_refunded", order_id).await;
    assert_eq!(refunded.len(), 2);
    assert_eq!(refunded[1]["total_refunded"]["amount"], 2999);
    assert_eq!(refunded[1]["fully_refunded"], true);
    assert_eq!(harness.sandbox.settled(id.parse().unwrap()).await.unwrap(), Some((2999, 2999)));
    harness.assert_ledger_balances().await;
}

#[tokio::test]
async fn a_refund_retried_with_its_key_is_made_once() {
    let harness = Harness::start().await;
    let (order_id, _) = harness.request_payment("pm_card_visa", 5000).await;
    let payment = harness.await_status(order_id, "captured").await;
    let id = payment["id"].as_str().unwrap();

    let body = json!({"amount": 500, "reason": "late delivery"});
    let (first_status, first) = harness.refund_with_key(id, "refund-key-1", body.clone()).await;
    let (again_status, again) = harness.refund_with_key(id, "refund-key-1", body).await;
    assert_eq!((first_status, again_status), (reqwest::StatusCode::ACCEPTED, reqwest::StatusCode::ACCEPTED));
    assert_eq!(first["data"]["id"], again["data"]["id"]);
    let (status, other) = harness.refund_with_key(id, "refund-key-1", json!({"amount": 600, "reason": "x"})).await;
    assert_eq!(status, 422, "{other}");

    harness.await_status(order_id, "partially_refunded").await;
    harness.settle().await;
    let payment = harness.payment(id.parse().unwrap()).await;
    assert_eq!(payment["refunds"].as_array().unwrap().len(), 1);
    assert_eq!(payment["balances"]["refunded"], 500);
}

#[tokio::test]
async fn refunds_are_refused_before_capture_and_validated() {
    let harness = Harness::start().await;
    let (order_id, _) = harness.request_payment("pm_card_declined", 2999).await;
    let failed = harness.await_status(order_id, "failed").await;
    let id = failed["id"].as_str().unwrap();

    let (status, body) = harness.refund(id, json!({"reason": "nothing to give"})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(code(&body), "payment_not_captured");

    let (status, body) = harness.refund(id, json!({"amount": 0, "reason": " "})).await;
    assert_eq!(status, 422, "{body}");
    let fields: Vec<&str> =
        body["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["amount", "reason"]);

    let (status, body) = harness.refund(&Uuid::now_v7().to_string(), json!({"reason": "who?"})).await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn an_order_cancelled_after_payment_is_refunded_once_even_if_asked_twice() {
    let harness = Harness::start().await;
    let (order_id, _) = harness.request_payment("pm_card_visa", 3100).await;
    let payment = harness.await_status(order_id, "captured").await;
    let id: Uuid = payment["id"].as_str().unwrap().parse().unwrap();

    harness.ask_refund(order_id, id, 3100, RefundReason::OrderCancelled).await;
    harness.ask_refund(order_id, id, 3100, RefundReason::OrderCancelled).await;

    let refunded = harness.await_status(order_id, "refunded").await;
    harness.settle().await;
    assert_eq!(refunded["balances"]["refunded"], 3100);
    assert_eq!(refunded["refunds"][0]["reason"], "order_cancelled");
    assert_eq!(refunded["refunds"][0]["requested_by"], "orders");
    let events = harness.events("payments.payment_refunded", order_id).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(harness.sandbox.settled(id).await.unwrap(), Some((3100, 3100)));
    harness.assert_ledger_balances().await;
}
