//! The sandbox webhook refuses what it cannot trust: bad signatures, stale timestamps,
//! replays, and bodies that are not events. A refused call changes nothing.

use std::time::Duration;

use chrono::Utc;
use payments::{GatewayPayment, PaymentGateway, SandboxSignature};
use platform::testing::eventually;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{Harness, WEBHOOK_SECRET, code, read};

async fn post(harness: &Harness, body: &str, signature: Option<String>) -> (StatusCode, Value) {
    let mut request = harness
        .client
        .post(harness.served.url(payments::SANDBOX_WEBHOOK_PATH))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(signature) = signature {
        request = request.header(SandboxSignature::HEADER, signature);
    }
    read(request.send().await.unwrap()).await
}

fn signed(secret: &str, at: i64, body: &str) -> Option<String> {
    Some(SandboxSignature::sign(&SecretString::from(secret), at, body.as_bytes()))
}

fn authorized(payment_id: &str) -> String {
    json!({
        "id": format!("evt_{}", Uuid::now_v7().simple()),
        "type": "payment.authorized",
        "created": Utc::now().timestamp(),
        "data": {"payment_id": payment_id, "reference": format!("auth_{payment_id}")},
    })
    .to_string()
}

/// A payment the gateway has authorized but we still see processing: nothing but a webhook
/// moves it on (the sandbox's own webhook goes nowhere, and reconciliation waits an hour).
async fn processing_payment(harness: &Harness) -> (Uuid, String) {
    harness.sandbox.set_webhook_target(payments::WebhookTarget {
        url: harness.served.url("/nowhere"),
        secret: SecretString::from("not the secret"),
    });
    let (order_id, _) = harness.request_payment("pm_card_async", 1200).await;
    let payment = harness.payment_of(order_id).await;
    let id: Uuid = payment["id"].as_str().unwrap().parse().unwrap();
    // The gateway has decided by the time it calls back.
    eventually(Duration::from_secs(10), || async {
        Ok(matches!(harness.sandbox.lookup(id).await, Ok(GatewayPayment::Authorized { .. })).then_some(()))
    })
    .await
    .unwrap();
    (order_id, id.to_string())
}

fn slow_reconciliation() -> payments::PaymentsConfig {
    let mut config = crate::support::config();
    config.reconcile_after = Duration::from_secs(3600);
    config
}

#[tokio::test]
async fn badly_signed_stale_or_malformed_webhooks_are_refused_and_change_nothing() {
    let harness = Harness::start_with(slow_reconciliation()).await;
    let (order_id, payment_id) = processing_payment(&harness).await;
    let body = authorized(&payment_id);
    let now = Utc::now().timestamp();

    let (status, refused) = post(&harness, &body, None).await;
    assert_eq!((status, code(&refused)), (StatusCode::BAD_REQUEST, "invalid_signature"), "{refused}");
    let (status, refused) = post(&harness, &body, signed("whsec_someone_else", now, &body)).await;
    assert_eq!((status, code(&refused)), (StatusCode::BAD_REQUEST, "invalid_signature"), "{refused}");
    let (status, refused) = post(&harness, &body, Some("t=abc,v1=zz".to_owned())).await;
    assert_eq!((status, code(&refused)), (StatusCode::BAD_REQUEST, "invalid_signature"), "{refused}");
    let tampered = body.replace("payment.authorized", "payment.failed");
    let (status, refused) = post(&harness, &tampered, signed(WEBHOOK_SECRET, now, &body)).await;
    assert_eq!((status, code(&refused)), (StatusCode::BAD_REQUEST, "invalid_signature"), "{refused}");
    let (status, refused) = post(&harness, &body, signed(WEBHOOK_SECRET, now - 600, &body)).await;
    assert_eq!((status, code(&refused)), (StatusCode::BAD_REQUEST, "stale_webhook"), "{refused}");
    let (status, refused) = post(&harness, "{\"hello\": 1}", signed(WEBHOOK_SECRET, now, "{\"hello\": 1}")).await;
    assert_eq!((status, code(&refused)), (StatusCode::BAD_REQUEST, "invalid_webhook"), "{refused}");

    let payment = harness.payment_of(order_id).await;
    assert_eq!(payment["status"], "pending", "{payment}");
    let mut db = harness.database.admin_connection().await.unwrap();
    let seen: i64 =
        sqlx::query_scalar("SELECT count(*) FROM payments.webhook_events").fetch_one(&mut db).await.unwrap();
    assert_eq!(seen, 0);
}

#[tokio::test]
async fn a_replayed_webhook_is_refused() {
    let harness = Harness::start_with(slow_reconciliation()).await;
    let (order_id, payment_id) = processing_payment(&harness).await;
    let body = authorized(&payment_id);

    let (status, first) = post(&harness, &body, signed(WEBHOOK_SECRET, Utc::now().timestamp(), &body)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["data"]["applied"], true);
    let (status, replay) = post(&harness, &body, signed(WEBHOOK_SECRET, Utc::now().timestamp(), &body)).await;
    assert_eq!((status, code(&replay)), (StatusCode::CONFLICT, "webhook_replayed"), "{replay}");

    let payment = harness.await_status(order_id, "captured").await;
    assert_eq!(crate::support::ledger_kinds(&payment), ["authorization", "capture"]);
    assert_eq!(harness.events("payments.payment_captured", order_id).await.len(), 1);
}
