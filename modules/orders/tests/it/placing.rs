//! Placing an order: prices from the catalogue, the shipping rule, validation, idempotency,
//! and nothing written when the catalogue cannot be asked.

use std::sync::atomic::Ordering;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Harness, code, order_body, product, timeline};

#[tokio::test]
async fn an_order_is_priced_by_the_catalogue_stored_pending_and_announced() {
    let app = Harness::start().await;
    let mut body = order_body(&[("MUG-001", 2)]);
    // A client-sent price is not a field at all.
    body["lines"][0]["unit_price"] = json!(1);
    let (status, answer) = app.place(body).await;
    assert_eq!((status, code(&answer)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"), "{answer}");

    let (status, answer) = app.place(order_body(&[("mug-001", 2)])).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let order = &answer["data"];
    assert_eq!(order["status"], "pending");
    assert_eq!(order["lines"][0]["product_id"], product("MUG-001").to_string());
    assert_eq!(order["lines"][0]["unit_price"], json!({"amount": 1250, "currency": "EUR"}));
    assert_eq!(order["subtotal"]["amount"], 2500);
    assert_eq!(order["shipping"]["amount"], 499, "flat shipping below 50.00");
    assert_eq!(order["total"]["amount"], 2999);
    assert_eq!(timeline(order), vec!["pending"]);
    let id: uuid::Uuid = order["id"].as_str().unwrap().parse().unwrap();
    let placed = app.events("orders.order_placed", id).await;
    assert_eq!(placed.len(), 1);
    assert_eq!(placed[0]["total"], order["total"]);
    assert_eq!(placed[0]["user_id"], app.customer.to_string());

    let (_, free) = app.place(order_body(&[("TEE-002", 2)])).await;
    assert_eq!(
        (free["data"]["shipping"]["amount"].as_i64(), free["data"]["total"]["amount"].as_i64()),
        (Some(0), Some(5000))
    );
}

#[tokio::test]
async fn lines_the_catalogue_cannot_sell_are_named_one_by_one() {
    let app = Harness::start().await;
    // BAG-004 has 1 unit for 2 asked: not a quote problem; the reservation will decide.
    let body = order_body(&[("MUG-001", 1), ("NOPE-999", 1), ("CAP-003", 1), ("BAG-004", 2), ("HAT-005", 1)]);
    let (status, answer) = app.place(body).await;
    assert_eq!((status, code(&answer)), (StatusCode::UNPROCESSABLE_ENTITY, "unorderable_lines"), "{answer}");
    let problems: Vec<(String, String)> = answer["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["field"].as_str().unwrap().to_owned(), d["code"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        problems,
        vec![
            ("lines[1]".to_owned(), "unknown_product".to_owned()),
            ("lines[2]".to_owned(), "inactive_product".to_owned()),
            ("lines[4]".to_owned(), "currency_mismatch".to_owned()),
        ]
    );
    assert_eq!(app.orders_stored().await, 0);
}

#[tokio::test]
async fn bad_requests_answer_per_field() {
    let app = Harness::start().await;
    let many: Vec<(&str, u32)> = vec![("MUG-001", 1); 51];
    let mut two_ways = order_body(&[("MUG-001", 1)]);
    two_ways["lines"][0]["product_id"] = json!(product("MUG-001"));
    let mut bad_address = order_body(&[("MUG-001", 1)]);
    bad_address["shipping_address"]["country"] = json!("Narnia");
    bad_address["shipping_address"]["name"] = json!("");
    let mut bad_method = order_body(&[("MUG-001", 1)]);
    bad_method["payment_method"] = json!("pm card");
    let cases = [
        (order_body(&[]), "lines"),
        (order_body(&many), "lines"),
        (order_body(&[("MUG-001", 0)]), "lines[0].quantity"),
        (order_body(&[("MUG-001", 101)]), "lines[0].quantity"),
        (order_body(&[("MUG-001", 1), ("mug-001", 2)]), "lines[1]"),
        (two_ways, "lines[0]"),
        (bad_address, "shipping_address.country"),
        (bad_method, "payment_method"),
    ];
    for (body, field) in cases {
        let (status, answer) = app.place(body).await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            "{field}: {answer}"
        );
        let fields: Vec<&str> =
            answer["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
        assert!(fields.contains(&field), "{field} not in {fields:?}");
    }
}

#[tokio::test]
async fn an_unreachable_catalogue_is_a_503_and_nothing_is_written() {
    let app = Harness::start().await;
    app.inventory.down.store(true, Ordering::SeqCst);
    let response = app
        .client
        .post(app.served.url("/api/v1/orders"))
        .bearer_auth(&app.customer_token)
        .header("idempotency-key", "down-1")
        .json(&order_body(&[("MUG-001", 1)]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(code(&body), "inventory_unavailable");
    let mut db = app.database.admin_connection().await.unwrap();
    let (orders, outbox): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM orders.orders), (SELECT count(*) FROM orders.outbox)")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!((orders, outbox), (0, 0));
    // 5xx answers are not stored against the key: the retry, once inventory is back, places it.
    app.inventory.down.store(false, Ordering::SeqCst);
    let (status, _) = app.place_with_key("down-1", &app.customer_token, order_body(&[("MUG-001", 1)])).await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn the_same_key_replays_the_same_order_and_another_body_is_refused() {
    let app = Harness::start().await;
    let body = order_body(&[("MUG-001", 1)]);
    let (first_status, first) = app.place_with_key("k-1", &app.customer_token, body.clone()).await;
    let (second_status, second) = app.place_with_key("k-1", &app.customer_token, body).await;
    assert_eq!((first_status, second_status), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(first["data"]["id"], second["data"]["id"]);
    let (status, answer) = app.place_with_key("k-1", &app.customer_token, order_body(&[("MUG-001", 2)])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(app.orders_stored().await, 1);

    let (status, answer) = read_without_key(&app).await;
    assert_eq!((status, code(&answer)), (StatusCode::BAD_REQUEST, "idempotency_key_required"));
}

async fn read_without_key(app: &Harness) -> (StatusCode, serde_json::Value) {
    let response = app
        .client
        .post(app.served.url("/api/v1/orders"))
        .bearer_auth(&app.customer_token)
        .json(&order_body(&[("MUG-001", 1)]))
        .send()
        .await
        .unwrap();
    crate::support::read(response).await
}

#[tokio::test]
async fn a_retry_is_marked_replayed_and_one_sent_while_the_first_runs_waits_for_its_order() {
    let app = Harness::start().await;
    let body = order_body(&[("MUG-001", 1)]);
    let send = || app.send_placement("twice-1", &app.customer_token, &body);
    // Sent together: one waits on the key's unique index for the other, then answers with it.
    let (first, second) = tokio::join!(send(), send());
    let replayed = [&first, &second].map(|r| r.headers().get("idempotent-replayed").is_some());
    assert_eq!(replayed.iter().filter(|r| **r).count(), 1, "exactly one of the two is the replay");
    let (first_status, first) = crate::support::read(first).await;
    let (second_status, second) = crate::support::read(second).await;
    assert_eq!((first_status, second_status), (StatusCode::ACCEPTED, StatusCode::ACCEPTED), "{first} {second}");
    assert_eq!(first["data"]["id"], second["data"]["id"]);
    assert_eq!(app.orders_stored().await, 1);
}

#[tokio::test]
async fn a_retry_gets_its_order_even_when_the_catalogue_cannot_be_reached_any_more() {
    let app = Harness::start().await;
    let body = order_body(&[("MUG-001", 1)]);
    let (_, first) = app.place_with_key("placed-1", &app.customer_token, body.clone()).await;
    // The placement went through; its retry must not be judged by a catalogue now down.
    app.inventory.down.store(true, Ordering::SeqCst);
    let (status, again) = app.place_with_key("placed-1", &app.customer_token, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["data"]["id"], first["data"]["id"]);
    // Another body under the same key is still refused, whatever the catalogue does.
    let (status, answer) = app.place_with_key("placed-1", &app.customer_token, order_body(&[("MUG-001", 2)])).await;
    assert_eq!((status, code(&answer)), (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"));
}

#[tokio::test]
async fn a_retry_finds_its_order_even_when_the_stored_answer_was_lost() {
    let app = Harness::start().await;
    let body = order_body(&[("MUG-001", 1)]);
    let (_, first) = app.place_with_key("lost-1", &app.customer_token, body.clone()).await;
    // As if the answer never made it back and the HTTP-level record went with it.
    let mut db = app.database.admin_connection().await.unwrap();
    sqlx::query("DELETE FROM orders.idempotency_keys").execute(&mut db).await.unwrap();
    let (status, again) = app.place_with_key("lost-1", &app.customer_token, body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(again["data"]["id"], first["data"]["id"]);
    let (status, answer) = app.place_with_key("lost-1", &app.customer_token, order_body(&[("TEE-002", 1)])).await;
    sqlx::query("DELETE FROM orders.idempotency_keys").execute(&mut db).await.unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let (status, answer) = app.place_with_key("lost-1", &app.customer_token, order_body(&[("TEE-002", 1)])).await;
    assert_eq!((status, code(&answer)), (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"));
    assert_eq!(app.orders_stored().await, 1);
    assert_eq!(
        app.events("orders.order_placed", first["data"]["id"].as_str().unwrap().parse().unwrap()).await.len(),
        1
    );
}

#[tokio::test]
async fn two_customers_may_use_the_same_key() {
    let app = Harness::start().await;
    let (_, other) = app.stranger();
    let (a, first) = app.place_with_key("shared", &app.customer_token, order_body(&[("MUG-001", 1)])).await;
    let (b, second) = app.place_with_key("shared", &other, order_body(&[("MUG-001", 1)])).await;
    assert_eq!((a, b), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_ne!(first["data"]["id"], second["data"]["id"]);
}
