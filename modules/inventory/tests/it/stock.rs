//! Stock adjustments and movements over HTTP: who may make them, what they do to on-hand, the
//! movements they leave, refusals that write nothing, and the low-stock event once per crossing.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::catalog::{create, id_of};
use crate::support::{Harness, code, read};

/// A product created by the admin with `units` on hand and a low-stock threshold.
async fn stocked(app: &Harness, sku: &str, units: i64, threshold: i64) -> Uuid {
    let body = json!({"sku": sku, "name": sku, "price": {"amount": 1000, "currency": "EUR"},
                      "initial_stock": units, "low_stock_threshold": threshold});
    id_of(&create(app, body).await)
}

async fn adjust(app: &Harness, product: Uuid, kind: &str, quantity: i64, reason: &str) -> (StatusCode, Value) {
    let body = json!({"kind": kind, "quantity": quantity, "reason": reason});
    let path = format!("/api/v1/products/{product}/stock-adjustments");
    read(app.call(Method::POST, path, Some(&app.admin_token), Some(body)).await).await
}

/// Adjusts, expecting success; returns the answer's data.
async fn adjusted(app: &Harness, product: Uuid, kind: &str, quantity: i64) -> Value {
    let (status, body) = adjust(app, product, kind, quantity, "test").await;
    assert_eq!(status, StatusCode::CREATED, "{kind} {quantity}: {body}");
    body["data"].clone()
}

/// Every movement of a product, walking the pages of `query`.
async fn movements(app: &Harness, product: Uuid, query: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut path = format!("/api/v1/products/{product}/stock-movements?{query}");
    loop {
        let (status, page) = read(app.call(Method::GET, &path, Some(&app.admin_token), None).await).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        all.extend(page["data"].as_array().unwrap().iter().cloned());
        let Some(cursor) = page["meta"]["next_cursor"].as_str() else { break };
        path = format!("/api/v1/products/{product}/stock-movements?{query}&after={cursor}");
    }
    all
}

fn kinds_and_quantities(movements: &[Value]) -> Vec<(String, i64)> {
    movements.iter().map(|m| (m["kind"].as_str().unwrap().to_owned(), m["quantity"].as_i64().unwrap())).collect()
}

/// The `inventory.low_stock` payloads about `product`.
async fn low_stock_events(app: &Harness, product: Uuid) -> Vec<Value> {
    app.events("inventory.low_stock").await.into_iter().filter(|e| e["product_id"] == json!(product)).collect()
}

#[tokio::test]
async fn stock_routes_are_for_admins() {
    let app = Harness::start().await;
    let product = stocked(&app, "MUG-1", 5, 0).await;
    let routes = [
        (
            Method::POST,
            format!("/api/v1/products/{product}/stock-adjustments"),
            Some(json!({"kind": "receive", "quantity": 1, "reason": "x"})),
        ),
        (Method::GET, format!("/api/v1/products/{product}/stock-movements"), None),
    ];
    for (method, path, body) in routes {
        let (status, answer) = read(app.call(method.clone(), &path, None, body.clone()).await).await;
        assert_eq!((status, code(&answer)), (StatusCode::UNAUTHORIZED, "unauthenticated"), "{method} {path}");
        let (status, answer) = read(app.call(method.clone(), &path, Some(&app.customer_token), body).await).await;
        assert_eq!((status, code(&answer)), (StatusCode::FORBIDDEN, "forbidden"), "{method} {path}");
    }
    assert_eq!(app.levels(product).await, (5, 0), "nothing was adjusted");
}

#[tokio::test]
async fn receiving_correcting_and_writing_off_change_on_hand_and_leave_movements() {
    let app = Harness::start().await;
    let product = stocked(&app, "SOCK-1", 10, 0).await;
    let admin = app.verifier.verify(&app.admin_token).unwrap().subject;

    let (status, body) = adjust(&app, product, "receive", 5, "  Delivery 4711 ").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let received = &body["data"];
    assert_eq!(received["movement"]["kind"], "receive");
    assert_eq!(received["movement"]["quantity"], 5);
    assert_eq!(received["movement"]["on_hand_after"], 15);
    assert_eq!(received["movement"]["reason"], "Delivery 4711");
    assert_eq!(received["movement"]["actor"], json!(admin));
    assert_eq!(received["movement"]["order_id"], Value::Null);
    assert_eq!(received["stock"], json!({"on_hand": 15, "reserved": 0, "available": 15, "in_stock": true}));

    assert_eq!(adjusted(&app, product, "correct", -3).await["stock"]["on_hand"], 12);
    assert_eq!(adjusted(&app, product, "correct", 1).await["stock"]["on_hand"], 13);
    let written_off = adjusted(&app, product, "write_off", 4).await;
    assert_eq!((&written_off["movement"]["quantity"], &written_off["stock"]["on_hand"]), (&json!(-4), &json!(9)));
    assert_eq!(app.levels(product).await, (9, 0));
    let (_, view) =
        read(app.call(Method::GET, format!("/api/v1/products/{product}"), Some(&app.admin_token), None).await).await;
    assert_eq!(view["data"]["stock"]["on_hand"], 9);

    let newest_first = movements(&app, product, "limit=2").await;
    assert_eq!(
        kinds_and_quantities(&newest_first),
        [
            ("write_off".into(), -4),
            ("correct".into(), 1),
            ("correct".into(), -3),
            ("receive".into(), 5),
            ("receive".into(), 10)
        ]
    );
    let sum: i64 = newest_first.iter().map(|m| m["quantity"].as_i64().unwrap()).sum();
    assert_eq!(sum, 9, "the movements add up to on-hand");
    assert_eq!(newest_first.last().unwrap()["reason"], "initial stock");
    let mut oldest_first = movements(&app, product, "sort=at&limit=3").await;
    oldest_first.reverse();
    assert_eq!(oldest_first, newest_first);
    assert_eq!(
        kinds_and_quantities(&movements(&app, product, "kind=correct").await),
        [("correct".into(), 1), ("correct".into(), -3)]
    );
}

#[tokio::test]
async fn invalid_adjustments_are_refused_per_field_and_write_nothing() {
    let app = Harness::start().await;
    let product = stocked(&app, "CAP-1", 5, 0).await;
    for (kind, quantity, reason, field) in [
        ("receive", 0, "x", "quantity"),
        ("receive", -2, "x", "quantity"),
        ("write_off", -1, "x", "quantity"),
        ("write_off", 0, "x", "quantity"),
        ("correct", 0, "x", "quantity"),
        ("receive", 2_147_483_648, "x", "quantity"),
        ("receive", 1, "   ", "reason"),
        ("receive", 1, &"x".repeat(501), "reason"),
    ] {
        let (status, body) = adjust(&app, product, kind, quantity, reason).await;
        assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"), "{kind} {quantity}");
        assert_eq!(body["error"]["details"][0]["field"], field, "{kind} {quantity}: {body}");
    }
    let (status, body) = adjust(&app, product, "receive", 2_147_483_647, "overflow").await;
    assert_eq!(
        (status, body["error"]["details"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("quantity"))
    );
    let path = format!("/api/v1/products/{product}/stock-adjustments");
    for body in [
        json!({"kind": "steal", "quantity": 1, "reason": "x"}),
        json!({"kind": "receive", "quantity": 1}),
        json!({"kind": "receive", "quantity": 1, "reason": "x", "extra": 1}),
    ] {
        let (status, answer) = read(app.call(Method::POST, &path, Some(&app.admin_token), Some(body)).await).await;
        assert_eq!((status, code(&answer)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"), "{answer}");
    }
    let (status, _) = adjust(&app, Uuid::now_v7(), "receive", 1, "x").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.levels(product).await, (5, 0));
    assert_eq!(movements(&app, product, "").await.len(), 1, "only the initial stock");
    for query in ["limit=0", "sort=kind", "after=garbage", "kind=steal"] {
        let path = format!("/api/v1/products/{product}/stock-movements?{query}");
        let (status, _) = read(app.call(Method::GET, path, Some(&app.admin_token), None).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
    }
    let path = format!("/api/v1/products/{}/stock-movements", Uuid::now_v7());
    assert_eq!(read(app.call(Method::GET, path, Some(&app.admin_token), None).await).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn taking_more_than_is_available_is_refused_and_writes_nothing() {
    let app = Harness::start().await;
    let product = stocked(&app, "LAMP-1", 5, 1).await;
    // Two units held for an order, as a reservation holds them.
    let mut db = app.database.admin_connection().await.unwrap();
    sqlx::query("UPDATE inventory.products SET reserved = 2 WHERE id = $1")
        .bind(product)
        .execute(&mut db)
        .await
        .unwrap();

    for (kind, quantity) in [("write_off", 4), ("correct", -4), ("write_off", 6)] {
        let (status, body) = adjust(&app, product, kind, quantity, "too many").await;
        assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "insufficient_stock"), "{kind} {quantity}");
        assert_eq!(body["error"]["details"]["available"], 3);
    }
    assert_eq!(app.levels(product).await, (5, 2));
    assert_eq!(movements(&app, product, "").await.len(), 1, "no movement for a refusal");
    assert!(low_stock_events(&app, product).await.is_empty(), "no event for a refusal");

    assert_eq!(
        adjusted(&app, product, "write_off", 3).await["stock"],
        json!({"on_hand": 2, "reserved": 2, "available": 0, "in_stock": false})
    );
    let (status, _) = adjust(&app, product, "correct", -1, "below reserved").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(app.levels(product).await, (2, 2));
}

#[tokio::test]
async fn low_stock_is_announced_once_per_crossing() {
    let app = Harness::start().await;
    let product = stocked(&app, "BEAN-1", 20, 0).await;
    let (status, _) = read(
        app.call(
            Method::PATCH,
            format!("/api/v1/products/{product}"),
            Some(&app.admin_token),
            Some(json!({"low_stock_threshold": 5})),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    adjusted(&app, product, "write_off", 14).await;
    assert!(low_stock_events(&app, product).await.is_empty(), "6 available is above 5");

    adjusted(&app, product, "write_off", 1).await;
    let events = low_stock_events(&app, product).await;
    assert_eq!(events.len(), 1, "5 available reaches the threshold");
    assert_eq!(
        (&events[0]["sku"], &events[0]["available"], &events[0]["threshold"]),
        (&json!("BEAN-1"), &json!(5), &json!(5))
    );

    adjusted(&app, product, "write_off", 2).await;
    assert_eq!(low_stock_events(&app, product).await.len(), 1, "still below: no second event");

    adjusted(&app, product, "receive", 10).await;
    assert_eq!(low_stock_events(&app, product).await.len(), 1, "back above: nothing to announce");
    adjusted(&app, product, "write_off", 10).await;
    let events = low_stock_events(&app, product).await;
    assert_eq!(events.len(), 2, "below again: a second crossing");
    assert_eq!(events[1]["available"], 3);
}

#[tokio::test]
async fn changing_the_threshold_re_checks_the_stock_against_it() {
    let app = Harness::start().await;
    let product = stocked(&app, "PEN-1", 3, 0).await;
    let threshold = |value: i64| {
        app.call(
            Method::PATCH,
            format!("/api/v1/products/{product}"),
            Some(&app.admin_token),
            Some(json!({"low_stock_threshold": value})),
        )
    };
    assert!(low_stock_events(&app, product).await.is_empty());
    assert_eq!(threshold(5).await.status(), StatusCode::OK);
    assert_eq!(low_stock_events(&app, product).await.len(), 1, "3 available is at or below the new threshold");
    threshold(6).await;
    assert_eq!(low_stock_events(&app, product).await.len(), 1, "already announced");
    threshold(2).await;
    threshold(4).await;
    assert_eq!(low_stock_events(&app, product).await.len(), 2, "above 2, then at or below 4: a new crossing");
}

#[tokio::test]
async fn archived_products_cannot_be_adjusted_but_keep_their_history() {
    let app = Harness::start().await;
    let product = stocked(&app, "OLD-1", 4, 0).await;
    adjusted(&app, product, "write_off", 1).await;
    let (status, _) =
        read(app.call(Method::DELETE, format!("/api/v1/products/{product}"), Some(&app.admin_token), None).await).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = adjust(&app, product, "receive", 1, "too late").await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    assert_eq!(
        kinds_and_quantities(&movements(&app, product, "").await),
        [("write_off".into(), -1), ("receive".into(), 4)]
    );
}

#[tokio::test]
async fn a_retried_adjustment_with_the_same_idempotency_key_counts_once() {
    let app = Harness::start().await;
    let product = stocked(&app, "TEA-1", 0, 0).await;
    let send = || {
        app.client
            .post(app.url(&format!("/api/v1/products/{product}/stock-adjustments")))
            .bearer_auth(&app.admin_token)
            .header("idempotency-key", "delivery-4711")
            .json(&json!({"kind": "receive", "quantity": 7, "reason": "Delivery 4711"}))
            .send()
    };
    let (first_status, first) = read(send().await.unwrap()).await;
    let (second_status, second) = read(send().await.unwrap()).await;
    assert_eq!((first_status, second_status), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!(first["data"]["movement"]["id"], second["data"]["movement"]["id"], "the first answer, replayed");
    assert_eq!(app.levels(product).await, (7, 0));
}
