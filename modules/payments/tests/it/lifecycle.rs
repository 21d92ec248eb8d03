//! A payment's life: authorized and captured, declined, voided, settled by webhook, and one
//! payment per order however often it is asked for.

use std::time::Duration;

use orders_contract::OrderStatus;
use payments::{GatewayPayment, PaymentGateway};
use platform::testing::eventually;
use reqwest::Method;
use uuid::Uuid;

use crate::support::{Harness, ledger_kinds};

#[tokio::test]
async fn a_payment_request_is_authorized_captured_and_announced_once() {
    let harness = Harness::start().await;
    let (order_id, _) = harness.request_payment("pm_card_visa", 2999).await;

    let payment = harness.await_status(order_id, "captured").await;
    assert_eq!(payment["amount"]["amount"], 2999);
    assert_eq!(payment["amount"]["currency"], "EUR");
    assert_eq!(payment["balances"]["captured"], 2999);
    assert_eq!(payment["balances"]["held"], 0);
    assert_eq!(payment["refundable"], 2999);
    assert_eq!(ledger_kinds(&payment), ["authorization", "capture"]);

    harness.settle().await;
    let captured = harness.events("payments.payment_captured", order_id).await;
    assert_eq!(captured.len(), 1);
    assert_eq!(captured[0]["amount"]["amount"], 2999);
    assert_eq!(captured[0]["payment_id"], payment["id"]);
    let id = payment["id"].as_str().unwrap();
    assert_eq!(harness.sandbox.executions(&format!("{id}:authorize")).await.unwrap(), 1);
    assert_eq!(harness.sandbox.executions(&format!("{id}:capture")).await.unwrap(), 1);
    harness.assert_ledger_balances().await;
}

#[tokio::test]
async fn a_declined_card_fails_the_payment_with_its_reason_and_takes_nothing() {
    let harness = Harness::start().await;
    let (declined, _) = harness.request_payment("pm_card_declined", 2999).await;
    let (poor, _) = harness.request_payment("pm_card_insufficient_funds", 2999).await;
    let (unknown, _) = harness.request_payment("pm_made_up", 2999).await;

    for (order_id, code) in
        [(declined, "card_declined"), (poor, "insufficient_funds"), (unknown, "invalid_payment_method")]
    {
        let payment = harness.await_status(order_id, "failed").await;
        assert_eq!(payment["failure"]["code"], code);
        assert!(ledger_kinds(&payment).is_empty(), "nothing moved: {payment}");
        let failed = harness.events("payments.payment_failed", order_id).await;
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0]["code"], code);
    }
    harness.settle().await;
    assert!(harness.events("payments.payment_captured", declined).await.is_empty());
    harness.assert_ledger_balances().await;
}

#[tokio::test]
async fn a_payment_request_delivered_twice_creates_one_payment_and_one_charge() {
    let harness = Harness::start().await;
    let (order_id, request) = harness.request_payment("pm_card_visa", 4200).await;
    harness.publish(&request).await;
    harness.publish(&request).await;

    let payment = harness.await_status(order_id, "captured").await;
    harness.settle().await;
    let (_, page) = crate::support::read(
        harness
            .call(Method::GET, format!("/api/v1/payments?order_id={order_id}"), Some(&harness.admin_token), None)
            .await,
    )
    .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(harness.events("payments.payment_captured", order_id).await.len(), 1);
    let id = payment["id"].as_str().unwrap();
    assert_eq!(harness.sandbox.executions(&format!("{id}:authorize")).await.unwrap(), 1);
    assert_eq!(harness.sandbox.settled(id.parse().unwrap()).await.unwrap(), Some((4200, 0)));
}

#[tokio::test]
async fn a_cancelled_order_voids_its_payment_instead_of_capturing_it() {
    let harness = Harness::start().await;
    // The slow card keeps the authorization in flight while the cancellation arrives.
    let (order_id, _) = harness.request_payment("pm_card_slow", 2999).await;
    harness.cancel(order_id, OrderStatus::AwaitingPayment).await;

    let payment = harness.await_status(order_id, "voided").await;
    harness.settle().await;
    assert_eq!(payment["cancel_requested"], true);
    assert_eq!(payment["balances"]["held"], 0);
    assert_eq!(payment["balances"]["captured"], 0);
    let kinds = ledger_kinds(&payment);
    assert!(kinds.is_empty() || kinds == ["authorization", "void"], "{kinds:?}");
    assert!(harness.events("payments.payment_captured", order_id).await.is_empty());
    let id = payment["id"].as_str().unwrap();
    assert_eq!(harness.sandbox.executions(&format!("{id}:capture")).await.unwrap(), 0);
    let at_gateway = harness.sandbox.lookup(id.parse().unwrap()).await.unwrap();
    assert!(
        matches!(at_gateway, GatewayPayment::Unknown | GatewayPayment::Voided { .. }),
        "the gateway holds nothing: {at_gateway:?}"
    );
    harness.assert_ledger_balances().await;
}

#[tokio::test]
async fn an_order_cancelled_while_an_authorization_answer_is_lost_still_releases_the_hold() {
    let harness = Harness::start().await;
    // The gateway authorizes, but its answer never comes: the job times out and retries.
    let (order_id, _) = harness.request_payment("pm_card_timeout_once", 2999).await;
    let id = harness.payment_of(order_id).await["id"].as_str().unwrap().to_owned();
    let key = format!("{id}:authorize");
    eventually(Duration::from_secs(10), || async {
        Ok((harness.sandbox.requests(&key).await.unwrap() > 0).then_some(()))
    })
    .await
    .expect("the authorization never reached the gateway");
    harness.cancel(order_id, OrderStatus::AwaitingPayment).await;

    let payment = harness.await_status(order_id, "voided").await;
    harness.settle().await;
    let id = payment["id"].as_str().unwrap();
    let at_gateway = harness.sandbox.lookup(id.parse().unwrap()).await.unwrap();
    assert!(matches!(at_gateway, GatewayPayment::Voided { .. }), "the hold was released: {at_gateway:?}");
    assert_eq!(harness.sandbox.executions(&format!("{id}:authorize")).await.unwrap(), 1);
    assert_eq!(harness.sandbox.executions(&format!("{id}:void")).await.unwrap(), 1);
    assert_eq!(harness.sandbox.executions(&format!("{id}:capture")).await.unwrap(), 0);
    assert!(harness.events("payments.payment_captured", order_id).await.is_empty());
    harness.assert_ledger_balances().await;
}

#[tokio::test]
async fn a_cancellation_of_an_order_without_a_payment_changes_nothing() {
    let harness = Harness::start().await;
    harness.cancel(Uuid::now_v7(), OrderStatus::Pending).await;
    harness.settle().await;
    let (_, page) =
        crate::support::read(harness.call(Method::GET, "/api/v1/payments", Some(&harness.admin_token), None).await)
            .await;
    assert!(page["data"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_payment_the_gateway_is_processing_is_settled_by_its_webhook() {
    let harness = Harness::start().await;
    let (approved, _) = harness.request_payment("pm_card_async", 1500).await;
    let (declined, _) = harness.request_payment("pm_card_async_declined", 1500).await;

    let payment = harness.await_status(approved, "captured").await;
    assert_eq!(ledger_kinds(&payment), ["authorization", "capture"]);
    let failed = harness.await_status(declined, "failed").await;
    assert_eq!(failed["failure"]["code"], "card_declined");
    assert_eq!(harness.events("payments.payment_failed", declined).await.len(), 1);
    let mut db = harness.database.admin_connection().await.unwrap();
    let webhooks: i64 =
        sqlx::query_scalar("SELECT count(*) FROM payments.webhook_events").fetch_one(&mut db).await.unwrap();
    assert_eq!(webhooks, 2, "both outcomes came by webhook");
    harness.assert_ledger_balances().await;
}

#[tokio::test]
async fn ledger_entries_cannot_be_changed_or_deleted() {
    let harness = Harness::start().await;
    let (order_id, _) = harness.request_payment("pm_card_visa", 999).await;
    harness.await_status(order_id, "captured").await;
    let mut db = harness.database.admin_connection().await.unwrap();
    for statement in [
        "UPDATE payments.ledger_entries SET amount = 1",
        "DELETE FROM payments.ledger_entries",
        "TRUNCATE payments.ledger_entries CASCADE",
    ] {
        let error = sqlx::query(statement).execute(&mut db).await.unwrap_err();
        assert!(error.to_string().contains("immutable"), "{statement}: {error}");
    }
    let kept: i64 =
        sqlx::query_scalar("SELECT count(*) FROM payments.ledger_entries").fetch_one(&mut db).await.unwrap();
    assert_eq!(kept, 2);
}
