//! Hostile input against the live app, one test per class of flaw found (issue 15): text the
//! database cannot store, answers outside the envelope, rules that could be sidestepped, and
//! checks done in the wrong order. Each test would have caught its class; each asserts what
//! happened and what did not (nothing half-written).

use bulkhead_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, Topology};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::shop::{customer, product};

async fn post_keyed(app: &TestApp, path: &str, token: &str, key: &str, body: &Value) -> reqwest::Response {
    let request = app.client.post(app.url(path)).bearer_auth(token).header("idempotency-key", key).json(body);
    request.send().await.unwrap()
}

/// Runs a `SELECT count(*) FROM <schema>.<table> …` on the database holding that schema.
async fn count(app: &TestApp, sql: &str) -> i64 {
    let schema = sql.split_once("FROM ").and_then(|(_, rest)| rest.split_once('.')).map_or("orders", |(s, _)| s);
    let url = app.database_of(schema).url();
    let mut db =
        <sqlx::PgConnection as sqlx::Connection>::connect(secrecy::ExposeSecret::expose_secret(&url)).await.unwrap();
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(&mut db).await.unwrap()
}

fn address() -> Value {
    json!({"name": "B", "line1": "1 High St", "city": "Leeds", "postal_code": "LS1 1AA", "country": "GB"})
}

/// The NUL character, which PostgreSQL's text and jsonb refuse, in every kind of field of
/// every module that stores text: a 4xx naming the field, in the envelope, nothing stored.
async fn text_the_database_cannot_store_is_a_clear_4xx_wherever_it_is_sent(topology: Topology) {
    let app = TestApp::spawn_on(topology, &[]).await;
    let buyer = customer(&app, "nul@example.com").await;
    let admin = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let mug = product(&app, "MUG-001").await;
    let mug_id = mug["id"].as_str().unwrap();
    let orders_before = count(&app, "SELECT count(*) FROM orders.orders").await;
    let products_before = count(&app, "SELECT count(*) FROM inventory.products").await;
    let movements_before = count(&app, "SELECT count(*) FROM inventory.stock_movements").await;

    let order = |line: Value, address: Value, method: &str| json!({ "lines": [line], "shipping_address": address, "payment_method": method });
    let adjustments = format!("/api/v1/products/{mug_id}/stock-adjustments");
    let mut nul_address = address();
    nul_address["city"] = json!("Le\u{0}eds");
    let cases: Vec<(&str, &str, &str, Value, &str)> = vec![
        (
            "orders",
            "/api/v1/orders",
            &buyer,
            order(json!({"sku": "MUG\u{0}001", "quantity": 1}), address(), "pm_card_visa"),
            "lines[0].sku",
        ),
        (
            "orders",
            "/api/v1/orders",
            &buyer,
            order(json!({"sku": "MUG-001", "quantity": 1}), nul_address, "pm_card_visa"),
            "shipping_address.city",
        ),
        (
            "orders",
            "/api/v1/orders",
            &buyer,
            order(json!({"sku": "MUG-001", "quantity": 1}), address(), "pm_\u{0}visa"),
            "payment_method",
        ),
        (
            "products",
            "/api/v1/products",
            &admin,
            json!({"sku": "NUL-1", "name": "Nul\u{0}l", "price": {"amount": 100, "currency": "EUR"}}),
            "name",
        ),
        (
            "products",
            "/api/v1/products",
            &admin,
            json!({"sku": "NUL-2", "name": "Fine", "description": "\u{0}", "price": {"amount": 100, "currency": "EUR"}}),
            "description",
        ),
        ("stock", &adjustments, &admin, json!({"kind": "receive", "quantity": 1, "reason": "found\u{0}"}), "reason"),
        (
            "users",
            "/api/v1/users",
            "",
            json!({"email": "a@example.com", "password": "a perfectly fine passphrase", "display_name": "\u{0}"}),
            "display_name",
        ),
        (
            "webhooks",
            "/api/v1/webhook-endpoints",
            &admin,
            json!({"url": "https://example.com/\u{0}", "event_types": ["orders.order_confirmed"]}),
            "url",
        ),
    ];
    for (index, (module, path, token, body, field)) in cases.iter().enumerate() {
        let response = if token.is_empty() {
            app.post(path, None, body).await
        } else {
            post_keyed(&app, path, token, &format!("nul-{index}"), body).await
        };
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{module} {field}");
        let envelope: Value = response.json().await.unwrap();
        assert_eq!(envelope["error"]["code"], "validation_failed", "{module} {field}: {envelope}");
        assert_eq!(envelope["error"]["details"][0]["field"], *field, "{module}: {envelope}");
    }
    for (path, parameter) in [("/api/v1/products?q=mug%00", "q"), ("/api/v1/orders?status=pen%00ding", "status")] {
        let response = app.get_as(path, &buyer).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        let envelope: Value = response.json().await.unwrap();
        assert_eq!(envelope["error"]["code"], "invalid_query");
        assert_eq!(envelope["error"]["details"]["parameter"], parameter);
    }
    let response = app.client.delete(app.url("/api/v1/auth/keys/k%00id")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "a path parameter with NUL names nothing");

    assert_eq!(count(&app, "SELECT count(*) FROM orders.orders").await, orders_before, "no order was written");
    assert_eq!(count(&app, "SELECT count(*) FROM inventory.products").await, products_before);
    assert_eq!(count(&app, "SELECT count(*) FROM inventory.stock_movements").await, movements_before);
    app.stop().await.unwrap();
}

/// The rule "each product at most once" holds on what the lines resolve to, whatever the
/// client wrote: by id on one line and by SKU (in any case) on another.
async fn one_product_on_two_lines_by_id_and_by_sku_is_refused(topology: Topology) {
    let app = TestApp::spawn_on(topology, &[]).await;
    let buyer = customer(&app, "twice@example.com").await;
    let mug = product(&app, "MUG-001").await;
    let body = json!({
        "lines": [{"product_id": mug["id"], "quantity": 1}, {"sku": "mug-001", "quantity": 2}],
        "shipping_address": address(), "payment_method": "pm_card_visa"
    });
    let response = post_keyed(&app, "/api/v1/orders", &buyer, "twice-1", &body).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let envelope: Value = response.json().await.unwrap();
    assert_eq!(
        envelope["error"]["details"],
        json!([{"field": "lines[1]", "code": "duplicate", "message": "names a product already on another line"}])
    );
    assert_eq!(count(&app, "SELECT count(*) FROM orders.orders").await, 0);
    app.stop().await.unwrap();
}

/// A body of another JSON shape is not taken for an object: serde would fill a struct from an
/// array, field by field, so `[null, null]` passed for an empty change (found by Schemathesis).
async fn a_body_that_is_not_a_json_object_is_refused(topology: Topology) {
    let app = TestApp::spawn_on(topology, &[]).await;
    let buyer = customer(&app, "shapes@example.com").await;
    for body in [json!([null, null]), json!(["Mallory"]), json!("Mallory"), json!(7)] {
        let response =
            app.client.patch(app.url("/api/v1/users/me")).bearer_auth(&buyer).json(&body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let envelope: Value = response.json().await.unwrap();
        assert_eq!(envelope["error"]["code"], "invalid_body", "{body}: {envelope}");
    }
    let me: Value = app.get_as("/api/v1/users/me", &buyer).await.json().await.unwrap();
    assert_eq!(me["data"]["display_name"], "Buyer", "nothing changed");
    app.stop().await.unwrap();
}

/// Sends raw bytes and reads the whole answer (the server closes after these errors).
async fn raw_exchange(app: &TestApp, request: &[u8]) -> (u16, String, Value) {
    let mut stream = tokio::net::TcpStream::connect(app.address).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_lowercase(), serde_json::from_str(body).unwrap_or(Value::Null))
}

/// What hyper answers before any middleware (an overlong URI, too many or too large headers,
/// an unparseable Content-Length) carries the envelope like everything else.
async fn the_http_servers_own_refusals_are_in_the_envelope(topology: Topology) {
    let app = TestApp::spawn_on(topology, &[]).await;
    let long_uri = format!("GET /api/v1/products?q={} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    let many_headers = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..150).map(|i| format!("x-h{i}: v\r\n")).collect::<String>()
    );
    let large_header = format!("GET /health HTTP/1.1\r\nHost: x\r\nx-big: {}\r\n\r\n", "b".repeat(600_000));
    let bad_length = "POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: twelve\r\n\r\n".to_owned();
    let two_lengths =
        "POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".to_owned();
    for (what, request, status, code) in [
        ("an overlong URI", long_uri, 414, "uri_too_long"),
        ("too many headers", many_headers, 431, "request_header_fields_too_large"),
        ("a header too large", large_header, 431, "request_header_fields_too_large"),
        ("an invalid Content-Length", bad_length, 400, "bad_request"),
        ("two Content-Lengths", two_lengths, 400, "bad_request"),
    ] {
        let (answered, head, body) = raw_exchange(&app, request.as_bytes()).await;
        assert_eq!(answered, status, "{what}: {head}");
        assert!(head.contains("content-type: application/json"), "{what}: {head}");
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
        assert!(body["error"]["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{what}: {body}");
    }
    // The connection-level fix changes nothing for a well-formed request.
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
    app.stop().await.unwrap();
}

/// Who is asking is settled before anything about the request: an anonymous caller with a
/// malformed Idempotency-Key is told to sign in, not that the key is wrong.
async fn an_anonymous_caller_is_refused_before_the_idempotency_key_is_judged(topology: Topology) {
    let app = TestApp::spawn_on(topology, &[]).await;
    for (path, key) in
        [("/api/v1/orders", "k".repeat(300)), ("/api/v1/products", "\t".to_owned()), ("/api/v1/orders", String::new())]
    {
        let response =
            app.client.post(app.url(path)).header("idempotency-key", key).json(&json!({})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "unauthenticated");
    }
    let response = app.client.post(app.url("/api/v1/orders")).json(&json!({})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "a missing required key: sign in first");
    app.stop().await.unwrap();
}

on_every_topology!(
    text_the_database_cannot_store_is_a_clear_4xx_wherever_it_is_sent,
    one_product_on_two_lines_by_id_and_by_sku_is_refused,
    a_body_that_is_not_a_json_object_is_refused,
    the_http_servers_own_refusals_are_in_the_envelope,
    an_anonymous_caller_is_refused_before_the_idempotency_key_is_judged,
);
