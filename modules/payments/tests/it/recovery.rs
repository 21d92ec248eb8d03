//! After crashes and a gateway that forgets or never decides (ADR 0021): the sandbox's books
//! outlive every process, a void of an authorization the gateway does not know ends the
//! payment instead of failing its job, and a payment reconciliation cannot settle ends failed,
//! flagged for a person who acknowledges it.

use std::time::Duration;

use orders_contract::OrderStatus;
use payments::{AuthorizeRequest, GatewayPayment, PaymentGateway, SandboxGateway, WebhookTarget};
use platform::testing::eventually;
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::json;
use uuid::Uuid;

use crate::support::{Harness, SCHEMAS, code, config, eur, ledger_kinds, read, sandbox_config};

/// The gateway's books are the same after a restart: an asynchronous authorization in
/// flight when the process died is decided anyway, its answer replayed to the same key, and
/// its webhook delivered by whichever process runs the sandbox next.
#[tokio::test]
async fn the_sandbox_keeps_its_books_across_a_restart() {
    // The books alone, without the payments app: its own sandbox sender would deliver the
    // webhook below to the app's endpoint before this test's receiver could see it.
    let database = platform::testing::TestDatabase::create(&SCHEMAS).await.unwrap();
    let databases = database.connect(&SCHEMAS).await.unwrap();
    databases.ensure_schema_for("payments", payments::SANDBOX_SCHEMA).await.unwrap();
    let pool = databases.pool("payments").unwrap().clone();
    let payment_id = Uuid::now_v7();
    let request = AuthorizeRequest {
        payment_id,
        amount: eur(2999),
        payment_method: "pm_card_async".to_owned(),
        idempotency_key: format!("{payment_id}:authorize"),
    };
    let before_the_crash = SandboxGateway::new(pool.clone(), sandbox_config());
    let answer = before_the_crash.authorize(&request).await.unwrap();
    drop(before_the_crash);

    let after_the_restart = SandboxGateway::new(pool, sandbox_config());
    assert_eq!(after_the_restart.authorize(&request).await.unwrap(), answer, "the stored answer is replayed");
    assert_eq!(after_the_restart.executions(&request.idempotency_key).await.unwrap(), 1, "authorized once");
    eventually(Duration::from_secs(5), || async {
        Ok(matches!(after_the_restart.lookup(payment_id).await, Ok(GatewayPayment::Authorized { .. })).then_some(()))
    })
    .await
    .expect("the outcome decided while nobody listened is known after the restart");

    // Its webhook was queued before the crash; the new process's sender delivers it.
    let (received_tx, mut received) = tokio::sync::mpsc::unbounded_channel::<String>();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let received_tx = received_tx.clone();
            async move {
                received_tx.send(body).ok();
                StatusCode::OK
            }
        }),
    );
    let served = platform::testing::Served::start(receiver).await.unwrap();
    after_the_restart.set_webhook_target(WebhookTarget {
        url: served.url("/hook"),
        secret: SecretString::from("whsec_restart_0123456789"),
    });
    let body = tokio::time::timeout(Duration::from_secs(10), received.recv()).await.unwrap().unwrap();
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["type"], "payment.authorized");
    assert_eq!(body["data"]["payment_id"], payment_id.to_string());
}

/// The gateway lost an authorization it once reported (a processor's mistake, or the old
/// in-memory sandbox after a restart). Cancelling the order voids the payment: nothing is
/// held, so nothing is voided at the gateway, and no job fails for good.
#[tokio::test]
async fn voiding_an_authorization_the_gateway_does_not_know_ends_the_payment_without_a_failed_job() {
    let mut settings = config();
    settings.reconcile_after = Duration::from_secs(3600);
    let harness = Harness::start_with(settings).await;
    let (order_id, _) = harness.request_payment("pm_card_async_silent", 2999).await;
    let payment = eventually(Duration::from_secs(10), || async {
        let payment = harness.payment_of(order_id).await;
        Ok(payment["gateway_reference"].is_string().then_some(payment))
    })
    .await
    .expect("the gateway never answered \"processing\"");
    let id: Uuid = payment["id"].as_str().unwrap().parse().unwrap();
    let mut db = harness.database.admin_connection().await.unwrap();
    sqlx::query("DELETE FROM payments_sandbox.charges WHERE payment_id = $1").bind(id).execute(&mut db).await.unwrap();

    harness.cancel(order_id, OrderStatus::AwaitingPayment).await;
    let voided = harness.await_status(order_id, "voided").await;
    harness.settle().await;
    assert!(ledger_kinds(&voided).is_empty(), "nothing was ever held: {voided}");
    assert!(harness.failed_jobs("payments.void").await.is_empty(), "nothing to void is no failure");
    assert!(harness.events("payments.payment_failed", order_id).await.is_empty());
    harness.assert_ledger_balances().await;
}

async fn attention_list(harness: &Harness, token: &str) -> (StatusCode, serde_json::Value) {
    read(harness.call(Method::GET, "/api/v1/payments?needs_attention=true", Some(token), None).await).await
}

/// A gateway that never decides: past `give_up_after` the payment ends failed (orders hears
/// `payments.payment_failed` and cancels), the gateway's pending hold is released, and a
/// person is alerted (flag, log, gauge) until an admin acknowledges it.
#[tokio::test]
async fn a_payment_reconciliation_cannot_settle_ends_failed_and_flagged_until_an_admin_acknowledges_it() {
    let mut settings = config();
    settings.give_up_after = Duration::from_secs(2);
    let mut never_decides = sandbox_config();
    never_decides.async_delay = Duration::from_secs(3600);
    let harness = Harness::start_with_sandbox(settings, never_decides).await;
    let (order_id, _) = harness.request_payment("pm_card_async_silent", 4200).await;

    let failed = harness.await_status(order_id, "failed").await;
    harness.settle().await;
    assert_eq!(failed["failure"]["code"], "processing_error");
    assert!(failed["attention"]["reason"].as_str().unwrap().starts_with("reconciliation_gave_up:"), "{failed}");
    let told = harness.events("payments.payment_failed", order_id).await;
    assert_eq!(told.len(), 1, "orders is told once");
    let id: Uuid = failed["id"].as_str().unwrap().parse().unwrap();
    eventually(Duration::from_secs(10), || async {
        Ok(matches!(harness.sandbox.lookup(id).await, Ok(GatewayPayment::Voided { .. })).then_some(()))
    })
    .await
    .expect("the hold the gateway kept was never released");
    let metrics = harness.metrics.render();
    assert!(metrics.contains("bulkhead_payments_attention_total{reason=\"reconciliation_gave_up\"} 1"), "{metrics}");
    eventually(Duration::from_secs(5), || async {
        Ok(harness.metrics.render().contains("bulkhead_payments_needing_attention 1").then_some(()))
    })
    .await
    .expect("the gauge to alert on never showed the flagged payment");

    let (status, page) = attention_list(&harness, &harness.admin_token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["data"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(attention_list(&harness, &harness.customer_token).await.0, StatusCode::FORBIDDEN);
    let (_, own) =
        read(harness.call(Method::GET, format!("/api/v1/payments/{id}"), Some(&harness.customer_token), None).await)
            .await;
    assert!(own["data"]["attention"].is_null(), "customers do not see operators' flags: {own}");

    let acknowledge = |note: &str| {
        harness.call(
            Method::POST,
            format!("/api/v1/payments/{id}/acknowledge"),
            Some(&harness.admin_token),
            Some(json!({ "note": note })),
        )
    };
    let (status, body) = read(acknowledge("Processor dashboard: nothing taken, hold released.").await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["data"]["attention"]["reason"].is_null());
    assert_eq!(body["data"]["attention"]["acknowledgement"], "Processor dashboard: nothing taken, hold released.");
    let (status, body) = read(acknowledge("again").await).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(code(&body), "nothing_to_acknowledge");
    assert!(attention_list(&harness, &harness.admin_token).await.1["data"].as_array().unwrap().is_empty());
    eventually(Duration::from_secs(5), || async {
        Ok(harness.metrics.render().contains("bulkhead_payments_needing_attention 0").then_some(()))
    })
    .await
    .expect("the gauge never came back to 0");
    harness.assert_ledger_balances().await;
}
