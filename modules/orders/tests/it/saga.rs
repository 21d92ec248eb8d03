//! Every path of docs/saga.md reaches its documented final state, driven by inventory's and
//! payments' events as those modules will append them; duplicates and early arrivals change
//! nothing; the payment deadline runs as a real job.

use std::time::Duration;

use chrono::Utc;
use inventory_contract::Quantity;
use inventory_contract::events::{
    RejectedLine, RejectionCode, ReservationExpired, ReservedLine, StockRejected, StockReserved,
};
use orders::OrdersConfig;
use payments_contract::events::{PaymentCaptured, PaymentRefunded};
use payments_contract::fixtures::declined;
use platform::money::{Currency, Money};
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::support::{Harness, code, product, read, timeline};

fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::parse("EUR").unwrap())
}

fn reserved(order: Uuid, reservation: Uuid) -> StockReserved {
    StockReserved {
        order_id: order,
        reservation_id: reservation,
        lines: vec![ReservedLine { product_id: product("MUG-001").into(), quantity: Quantity::new(1).unwrap() }],
        expires_at: Utc::now() + chrono::TimeDelta::minutes(30),
        reserved_at: Utc::now(),
    }
}

fn captured(order: Uuid, payment: Uuid, amount: i64) -> PaymentCaptured {
    PaymentCaptured { payment_id: payment.into(), order_id: order, amount: eur(amount), captured_at: Utc::now() }
}

async fn admin(
    app: &Harness,
    order: Uuid,
    action: &str,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    read(app.call(Method::POST, format!("/api/v1/orders/{order}/{action}"), Some(&app.admin_token), body).await).await
}

#[tokio::test]
async fn the_happy_path_goes_from_placed_to_delivered() {
    let app = Harness::start().await;
    let (order, total) = app.order(&[("MUG-001", 1)]).await;
    app.publish("inventory", &reserved(order, Uuid::now_v7())).await;
    let awaiting = app.await_status(order, "awaiting_payment").await;
    assert!(awaiting["pay_by"].is_string());
    let requested = app.await_events("orders.payment_requested", order, 1).await;
    assert_eq!(requested[0]["amount"], json!({"amount": total, "currency": "EUR"}));
    assert_eq!(requested[0]["payment_method"], "pm_card_visa");
    let mut db = app.database.admin_connection().await.unwrap();
    let scheduled: i64 =
        sqlx::query_scalar("SELECT count(*) FROM apalis.jobs WHERE job_type = 'orders.payment_timeout'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(scheduled, 1, "the payment deadline is scheduled with the transition");

    let payment = Uuid::now_v7();
    app.publish("payments", &captured(order, payment, total)).await;
    app.await_status(order, "confirmed").await;
    let confirmed = app.await_events("orders.order_confirmed", order, 1).await;
    assert_eq!(confirmed[0]["payment_id"], payment.to_string());

    let (status, body) =
        admin(&app, order, "ship", Some(json!({"carrier": "DHL", "tracking_number": "JD014600006281234567"}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["shipment"], json!({"carrier": "DHL", "tracking_number": "JD014600006281234567"}));
    let (status, body) = admin(&app, order, "deliver", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(timeline(&body["data"]), vec!["pending", "awaiting_payment", "confirmed", "shipped", "delivered"]);
    let causes: Vec<&str> =
        body["data"]["timeline"].as_array().unwrap().iter().map(|e| e["cause_kind"].as_str().unwrap()).collect();
    assert_eq!(causes, vec!["request", "event", "event", "request", "request"]);
    assert_eq!(app.events("orders.order_shipped", order).await.len(), 1);
    assert_eq!(app.events("orders.order_delivered", order).await.len(), 1);
}

#[tokio::test]
async fn rejected_stock_rejects_the_order_with_its_reasons() {
    let app = Harness::start().await;
    let (order, _) = app.order(&[("MUG-001", 1)]).await;
    let line = RejectedLine {
        product_id: product("MUG-001").into(),
        code: RejectionCode::InsufficientStock,
        requested: 1,
        available: 0,
    };
    app.publish("inventory", &StockRejected { order_id: order, lines: vec![line], rejected_at: Utc::now() }).await;
    let rejected = app.await_status(order, "rejected").await;
    assert_eq!(rejected["rejected_lines"][0]["code"], "insufficient_stock");
    assert_eq!(rejected["rejected_lines"][0]["available"], 0);
    assert_eq!(app.await_events("orders.order_rejected", order, 1).await[0]["lines"][0]["requested"], 1);
}

#[tokio::test]
async fn a_declined_payment_cancels_the_order_and_releases_its_stock() {
    let app = Harness::start().await;
    let (order, _) = app.order(&[("MUG-001", 1)]).await;
    app.publish("inventory", &reserved(order, Uuid::now_v7())).await;
    app.await_status(order, "awaiting_payment").await;
    app.publish("payments", &declined(order)).await;
    let cancelled = app.await_status(order, "cancelled").await;
    assert_eq!(cancelled["cancellation"], json!({"reason": "payment_failed", "detail": "card_declined"}));
    let event = &app.await_events("orders.order_cancelled", order, 1).await[0];
    assert_eq!(
        (event["reason"].as_str(), event["cancelled_from"].as_str()),
        (Some("payment_failed"), Some("awaiting_payment"))
    );
    assert_eq!(cancelled["timeline"][2]["reason"], "payment_failed: card_declined");
}

#[tokio::test]
async fn an_unpaid_order_is_cancelled_by_its_payment_deadline_job() {
    let config = OrdersConfig { payment_timeout: Duration::from_secs(2), ..OrdersConfig::default() };
    let app = Harness::start_with(config).await;
    let (order, total) = app.order(&[("MUG-001", 1)]).await;
    app.publish("inventory", &reserved(order, Uuid::now_v7())).await;
    // Not waiting for `awaiting_payment` on its own: two seconds pass quickly on a busy machine.
    let cancelled = app.await_status(order, "cancelled").await;
    assert_eq!(crate::support::timeline(&cancelled), vec!["pending", "awaiting_payment", "cancelled"]);
    assert_eq!(cancelled["cancellation"]["reason"], "payment_timeout");
    assert_eq!(cancelled["timeline"][2]["cause_kind"], "job");
    let event = &app.events("orders.order_cancelled", order).await[0];
    assert_eq!(
        (event["reason"].as_str(), event["cancelled_from"].as_str()),
        (Some("payment_timeout"), Some("awaiting_payment"))
    );
    // The payment arrives after all: it is given back.
    app.publish("payments", &captured(order, Uuid::now_v7(), total)).await;
    assert_eq!(app.await_events("orders.refund_requested", order, 1).await[0]["reason"], "late_capture");
}

#[tokio::test]
async fn an_expired_reservation_cancels_and_a_late_capture_is_refunded() {
    let app = Harness::start().await;
    let (order, total) = app.order(&[("MUG-001", 1)]).await;
    let reservation = Uuid::now_v7();
    app.publish("inventory", &reserved(order, reservation)).await;
    app.await_status(order, "awaiting_payment").await;
    app.publish(
        "inventory",
        &ReservationExpired { order_id: order, reservation_id: reservation, expired_at: Utc::now() },
    )
    .await;
    let cancelled = app.await_status(order, "cancelled").await;
    assert_eq!(cancelled["cancellation"]["reason"], "reservation_expired");
    let late = Uuid::now_v7();
    app.publish("payments", &captured(order, late, total)).await;
    let refund = &app.await_events("orders.refund_requested", order, 1).await[0];
    assert_eq!(
        (refund["payment_id"].as_str(), refund["reason"].as_str()),
        (Some(late.to_string().as_str()), Some("late_capture"))
    );
    assert_eq!(app.get(order).await["status"], "cancelled");
}

#[tokio::test]
async fn a_customer_cancels_before_payment_and_a_late_capture_is_refunded() {
    let app = Harness::start().await;
    for reserve_first in [false, true] {
        let (order, total) = app.order(&[("MUG-001", 1)]).await;
        if reserve_first {
            app.publish("inventory", &reserved(order, Uuid::now_v7())).await;
            app.await_status(order, "awaiting_payment").await;
        }
        let (status, body) = read(
            app.call(Method::POST, format!("/api/v1/orders/{order}/cancel"), Some(&app.customer_token), None).await,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["cancellation"]["reason"], "customer_request");
        let expected_from = if reserve_first { "awaiting_payment" } else { "pending" };
        assert_eq!(app.events("orders.order_cancelled", order).await[0]["cancelled_from"], expected_from);
        assert!(app.events("orders.refund_requested", order).await.is_empty(), "nothing was paid");

        app.publish("payments", &captured(order, Uuid::now_v7(), total)).await;
        assert_eq!(app.await_events("orders.refund_requested", order, 1).await[0]["reason"], "late_capture");
    }
}

#[tokio::test]
async fn cancelling_a_paid_order_refunds_it() {
    let app = Harness::start().await;
    let (order, total) = app.order(&[("MUG-001", 1)]).await;
    app.publish("inventory", &reserved(order, Uuid::now_v7())).await;
    app.await_status(order, "awaiting_payment").await;
    let payment = Uuid::now_v7();
    app.publish("payments", &captured(order, payment, total)).await;
    app.await_status(order, "confirmed").await;

    let (status, body) =
        read(app.call(Method::POST, format!("/api/v1/orders/{order}/cancel"), Some(&app.customer_token), None).await)
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refund = &app.events("orders.refund_requested", order).await[0];
    assert_eq!(refund["reason"], "order_cancelled");
    assert_eq!(refund["amount"], json!({"amount": total, "currency": "EUR"}));
    assert_eq!(app.events("orders.order_cancelled", order).await[0]["cancelled_from"], "confirmed");

    let refunded = PaymentRefunded {
        payment_id: payment.into(),
        order_id: order,
        refund_id: Uuid::now_v7(),
        amount: eur(total),
        total_refunded: eur(total),
        fully_refunded: true,
        refunded_at: Utc::now(),
    };
    app.publish("payments", &refunded).await;
    app.settle().await;
    assert_eq!(app.get(order).await["refunded"]["amount"], total);
}

#[tokio::test]
async fn a_second_capture_for_a_paid_order_is_refunded() {
    let app = Harness::start().await;
    let (order, total) = app.order(&[("MUG-001", 1)]).await;
    app.publish("inventory", &reserved(order, Uuid::now_v7())).await;
    app.publish("payments", &captured(order, Uuid::now_v7(), total)).await;
    app.await_status(order, "confirmed").await;
    let second = Uuid::now_v7();
    app.publish("payments", &captured(order, second, total)).await;
    let refund = &app.await_events("orders.refund_requested", order, 1).await[0];
    assert_eq!(
        (refund["payment_id"].as_str(), refund["reason"].as_str()),
        (Some(second.to_string().as_str()), Some("duplicate_capture"))
    );
    assert_eq!(app.get(order).await["status"], "confirmed");
}

#[tokio::test]
async fn a_capture_of_the_wrong_amount_is_refunded_and_the_order_waits_for_the_right_one() {
    let app = Harness::start().await;
    let (order, total) = app.order(&[("MUG-001", 1)]).await;
    app.publish("inventory", &reserved(order, Uuid::now_v7())).await;
    app.await_status(order, "awaiting_payment").await;
    let short = Uuid::now_v7();
    app.publish("payments", &captured(order, short, total - 1)).await;
    let refund = &app.await_events("orders.refund_requested", order, 1).await[0];
    assert_eq!(
        (refund["reason"].as_str(), refund["amount"]["amount"].as_i64()),
        (Some("amount_mismatch"), Some(total - 1))
    );
    assert_eq!(app.get(order).await["status"], "awaiting_payment");
    app.publish("payments", &captured(order, Uuid::now_v7(), total)).await;
    app.await_status(order, "confirmed").await;
}

#[tokio::test]
async fn every_event_delivered_twice_changes_the_order_once() {
    let app = Harness::start().await;
    let (order, total) = app.order(&[("MUG-001", 1)]).await;
    let stock = reserved(order, Uuid::now_v7());
    app.publish("inventory", &stock).await;
    app.publish("inventory", &stock).await;
    // Inventory's and payments' logs are read independently: wait, so the capture comes second.
    app.await_status(order, "awaiting_payment").await;
    let capture = captured(order, Uuid::now_v7(), total);
    app.publish("payments", &capture).await;
    app.publish("payments", &capture).await;
    app.await_status(order, "confirmed").await;
    app.settle().await;
    assert_eq!(app.events("orders.payment_requested", order).await.len(), 1);
    assert_eq!(app.events("orders.order_confirmed", order).await.len(), 1);
    assert!(app.events("orders.refund_requested", order).await.is_empty(), "the same capture twice is one capture");
    assert_eq!(timeline(&app.get(order).await), vec!["pending", "awaiting_payment", "confirmed"]);

    let (order, _) = app.order(&[("MUG-001", 1)]).await;
    app.publish("inventory", &reserved(order, Uuid::now_v7())).await;
    app.await_status(order, "awaiting_payment").await;
    let failure = declined(order);
    app.publish("payments", &failure).await;
    app.publish("payments", &failure).await;
    app.await_status(order, "cancelled").await;
    app.settle().await;
    assert_eq!(app.events("orders.order_cancelled", order).await.len(), 1);
}

#[tokio::test]
async fn a_payment_outcome_that_arrives_before_the_reservation_ends_the_same_way() {
    let app = Harness::start().await;
    // Captured, then reserved: confirmed, as in the usual order.
    let (order, total) = app.order(&[("MUG-001", 1)]).await;
    let payment = Uuid::now_v7();
    app.publish("payments", &captured(order, payment, total)).await;
    app.settle().await;
    assert_eq!(app.get(order).await["status"], "pending", "kept until the stock is known");
    app.publish("inventory", &reserved(order, Uuid::now_v7())).await;
    app.await_status(order, "confirmed").await;
    assert_eq!(app.await_events("orders.order_confirmed", order, 1).await[0]["payment_id"], payment.to_string());

    // Declined, then reserved: cancelled, as in the usual order.
    let (order, _) = app.order(&[("MUG-001", 1)]).await;
    app.publish("payments", &declined(order)).await;
    app.settle().await;
    app.publish("inventory", &reserved(order, Uuid::now_v7())).await;
    let cancelled = app.await_status(order, "cancelled").await;
    assert_eq!(cancelled["cancellation"]["reason"], "payment_failed");
}

#[tokio::test]
async fn requests_that_do_not_fit_the_status_are_conflicts() {
    let app = Harness::start().await;
    let (order, _) = app.order(&[("MUG-001", 1)]).await;
    let (status, body) = admin(&app, order, "ship", Some(json!({"carrier": "DHL", "tracking_number": "1"}))).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "invalid_transition"), "{body}");
    assert_eq!(body["error"]["message"], "An order that is pending cannot be shipped.");
    let (status, _) = admin(&app, order, "deliver", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = admin(&app, order, "cancel", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = admin(&app, order, "cancel", None).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "invalid_transition"));
    let (status, body) = admin(&app, order, "ship", Some(json!({"carrier": "", "tracking_number": "1"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[test]
fn the_saga_document_names_every_state_and_event() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/saga.md")).unwrap();
    let events = orders_contract::events::PUBLISHED
        .iter()
        .chain(&inventory_contract::events::SAGA_EVENTS)
        .chain(&payments_contract::events::SAGA_EVENTS);
    for name in orders_contract::OrderStatus::ALL.iter().map(|s| s.as_str()).chain(events.map(|e| e.event_type)) {
        assert!(doc.contains(&format!("`{name}`")), "docs/saga.md does not name `{name}`");
    }
    // …and these tests exercise each of the doc's paths by the same names.
    let tests = include_str!("saga.rs");
    for status in ["awaiting_payment", "confirmed", "shipped", "delivered", "rejected", "cancelled"] {
        assert!(tests.contains(&format!("\"{status}\"")), "no test reaches `{status}`");
    }
    for reason in [
        "payment_failed",
        "payment_timeout",
        "reservation_expired",
        "customer_request",
        "late_capture",
        "duplicate_capture",
        "amount_mismatch",
        "order_cancelled",
    ] {
        assert!(
            doc.contains(&format!("`{reason}`")) && tests.contains(&format!("\"{reason}\"")),
            "`{reason}` missing in the doc or the tests"
        );
    }
}
