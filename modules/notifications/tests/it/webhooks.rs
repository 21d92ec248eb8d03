//! Webhooks: registration, signed deliveries a receiver verifies, retries with backoff,
//! disabling after repeated failures, permanent failures, manual redelivery, and the admin
//! API around endpoints.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::routing::post;
use hmac::{Hmac, Mac};
use platform::testing::eventually;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;

use crate::events;
use crate::support::{Harness, code, fast, read};

/// A request the receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub headers: HeaderMap,
    pub body: Value,
    /// Whether `Bulkhead-Signature` verified with the endpoint's secret.
    pub signature_valid: bool,
}

#[derive(Debug, Default)]
struct ReceiverState {
    secret: Option<String>,
    /// Statuses to answer, first to last; then 200.
    answers: Vec<u16>,
    deliveries: Vec<Delivery>,
}

/// A webhook receiver on loopback that verifies signatures as docs/notifications.md says a
/// receiver should.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<ReceiverState>>,
    _served: Arc<platform::testing::Served>,
}

impl Receiver {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let router = axum::Router::new().route("/hook", post(receive)).with_state(state.clone());
        let served = platform::testing::Served::start(router).await.unwrap();
        Self { url: served.url("/hook"), state, _served: Arc::new(served) }
    }

    pub fn trust(&self, secret: &str) {
        self.state.lock().unwrap().secret = Some(secret.to_owned());
    }

    pub fn answer(&self, statuses: &[u16]) {
        self.state.lock().unwrap().answers = statuses.to_vec();
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.lock().unwrap().deliveries.clone()
    }
}

async fn receive(State(state): State<Arc<Mutex<ReceiverState>>>, headers: HeaderMap, body: Bytes) -> AxumStatus {
    let mut state = state.lock().unwrap();
    let signature_valid = state.secret.as_deref().is_some_and(|secret| verify(secret, &headers, &body));
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.deliveries.push(Delivery { headers, body, signature_valid });
    let status = if state.answers.is_empty() { 200 } else { state.answers.remove(0) };
    AxumStatus::from_u16(status).unwrap()
}

/// The receiver's check: `t=<ts>,v1=<hex>`, HMAC-SHA256 over `<ts>.<body>`.
fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(header) = headers.get("bulkhead-signature").and_then(|v| v.to_str().ok()) else { return false };
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => timestamp = Some(value.to_owned()),
            Some(("v1", value)) => signatures.push(value.to_owned()),
            _ => {}
        }
    }
    let Some(timestamp) = timestamp else { return false };
    let fresh = timestamp.parse::<i64>().is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() <= 300);
    fresh
        && signatures.iter().any(|signature| {
            let Ok(expected) = hex::decode(signature) else { return false };
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(timestamp.as_bytes());
            mac.update(b".");
            mac.update(body);
            mac.verify_slice(&expected).is_ok()
        })
}

async fn await_deliveries(receiver: &Receiver, count: usize) -> Vec<Delivery> {
    eventually(Duration::from_secs(20), || async {
        let deliveries = receiver.deliveries();
        Ok((deliveries.len() >= count).then_some(deliveries))
    })
    .await
    .unwrap_or_else(|_| panic!("{count} deliveries never arrived; got {}", receiver.deliveries().len()))
}

#[tokio::test]
async fn a_registered_endpoint_gets_signed_deliveries_of_the_events_it_asked_for() {
    let app = Harness::start().await;
    let receiver = Receiver::start().await;
    let (endpoint, secret) = app.register_endpoint(&receiver.url, &["orders.order_confirmed"]).await;
    receiver.trust(&secret);
    let ada = app.users.add("ada@example.com", "Ada Lovelace");
    let event_id = app.publish("orders", &events::confirmed(ada, events::order())).await;
    app.publish("orders", &events::shipped(ada, events::order())).await;

    let deliveries = await_deliveries(&receiver, 1).await;
    app.settled_notifications(3).await;
    assert_eq!(receiver.deliveries().len(), 1, "only the event type asked for");
    let delivery = &deliveries[0];
    assert!(delivery.signature_valid, "{:?}", delivery.headers);
    assert_eq!(delivery.headers["bulkhead-event-type"], "orders.order_confirmed");
    assert_eq!(delivery.headers["bulkhead-event-id"], event_id.to_string().as_str());
    assert_eq!(delivery.headers["content-type"], "application/json");
    assert_eq!(delivery.body["type"], "orders.order_confirmed");
    assert_eq!(delivery.body["event_id"], event_id.to_string());
    assert_eq!(delivery.body["data"]["order_id"], events::order().to_string());
    assert_eq!(delivery.body["data"]["total"], json!({"amount": 2999, "currency": "EUR"}));
    insta::assert_json_snapshot!("webhook_body", delivery.body, {
        ".id" => "[delivery id]", ".event_id" => "[event id]", ".occurred_at" => "[time]",
        ".data.payment_id" => "[payment id]", ".data.user_id" => "[user id]",
    });

    let delivery_id = delivery.body["id"].as_str().unwrap();
    assert_eq!(delivery.headers["bulkhead-delivery-id"], delivery_id);
    let (status, body) =
        app.admin(Method::GET, format!("/api/v1/webhook-endpoints/{endpoint}/deliveries/{delivery_id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["status"], "sent");
    assert_eq!(body["data"]["delivery_attempts"][0]["outcome"], "succeeded");
    assert_eq!(body["data"]["delivery_attempts"][0]["response_code"], 200);
    assert!(body["data"]["delivery_attempts"][0]["latency_ms"].is_i64());
}

#[tokio::test]
async fn a_receiver_that_fails_for_a_while_gets_the_delivery_once_it_recovers() {
    let app = Harness::start().await;
    let receiver = Receiver::start().await;
    receiver.answer(&[503, 500]);
    let (endpoint, secret) = app.register_endpoint(&receiver.url, &["orders.order_confirmed"]).await;
    receiver.trust(&secret);
    app.publish("orders", &events::confirmed(Uuid::now_v7(), events::order())).await;

    let deliveries = await_deliveries(&receiver, 3).await;
    let notifications = app.settled_notifications(2).await;
    let webhook = notifications.iter().find(|n| n["channel"] == "webhook").unwrap();
    assert_eq!(webhook["status"], "sent");
    assert!(deliveries.iter().all(|d| d.signature_valid));
    assert!(deliveries.iter().all(|d| d.body == deliveries[0].body), "every attempt sends the same body");
    let attempts = app.attempts(webhook["id"].as_str().unwrap()).await;
    let codes: Vec<(&str, i64)> =
        attempts.iter().map(|a| (a["outcome"].as_str().unwrap(), a["response_code"].as_i64().unwrap())).collect();
    assert_eq!(codes, vec![("transient_failure", 503), ("transient_failure", 500), ("succeeded", 200)]);
    let (_, body) = app.admin(Method::GET, format!("/api/v1/webhook-endpoints/{endpoint}"), None).await;
    assert_eq!(body["data"]["consecutive_failures"], 0, "a success ends the streak");
    assert_eq!(receiver.deliveries().len(), 3);
}

#[tokio::test]
async fn an_endpoint_is_disabled_after_n_failures_in_a_row_and_gets_what_it_missed_when_redelivered() {
    let app = Harness::start_with(|config| {
        config.webhooks.disable_after_failures = 3;
        config.webhooks.retry = fast(10);
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.answer(&[500; 20]);
    let (endpoint, _) = app.register_endpoint(&receiver.url, &["orders.order_confirmed", "orders.order_shipped"]).await;
    let user = Uuid::now_v7();
    app.publish("orders", &events::confirmed(user, events::order())).await;

    let notifications = app.settled_notifications(2).await;
    let webhook = notifications.iter().find(|n| n["channel"] == "webhook").unwrap();
    assert_eq!(webhook["status"], "failed");
    assert!(webhook["reason"].as_str().unwrap().contains("disabled after 3 failures"), "{webhook}");
    assert_eq!(receiver.deliveries().len(), 3);
    let (_, body) = app.admin(Method::GET, format!("/api/v1/webhook-endpoints/{endpoint}"), None).await;
    assert_eq!(body["data"]["status"], "disabled");
    assert_eq!(body["data"]["disabled_reason"], "3 delivery attempts failed in a row");

    // A disabled endpoint is sent nothing new, but what it missed is recorded as failed
    // (no attempt) so it can be redelivered once the endpoint is enabled again.
    app.publish("orders", &events::shipped(user, events::order())).await;
    app.settle().await;
    assert_eq!(receiver.deliveries().len(), 3);
    let (_, missed) = app
        .admin(
            Method::GET,
            format!("/api/v1/webhook-endpoints/{endpoint}/deliveries?event_type=orders.order_shipped"),
            None,
        )
        .await;
    let missed = &missed["data"][0];
    assert_eq!(missed["status"], "failed", "{missed}");
    assert!(missed["reason"].as_str().unwrap().starts_with("endpoint_disabled"), "{missed}");
    assert_eq!(missed["attempts"], 0);

    let (status, body) = app.admin(Method::POST, format!("/api/v1/webhook-endpoints/{endpoint}/enable"), None).await;
    assert_eq!((status, body["data"]["status"].as_str()), (StatusCode::OK, Some("enabled")));
    receiver.answer(&[]);
    for delivery in [webhook["id"].as_str().unwrap(), missed["id"].as_str().unwrap()] {
        let (status, body) = app
            .admin(Method::POST, format!("/api/v1/webhook-endpoints/{endpoint}/deliveries/{delivery}/redeliver"), None)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let types: Vec<String> =
        await_deliveries(&receiver, 5).await[3..].iter().map(|d| d.body["type"].as_str().unwrap().to_owned()).collect();
    assert!(types.contains(&"orders.order_shipped".to_owned()), "{types:?}");
}

#[tokio::test]
async fn a_4xx_answer_fails_the_delivery_without_retrying() {
    let app = Harness::start().await;
    let receiver = Receiver::start().await;
    receiver.answer(&[410]);
    app.register_endpoint(&receiver.url, &["orders.order_confirmed"]).await;
    app.publish("orders", &events::confirmed(Uuid::now_v7(), events::order())).await;

    let notifications = app.settled_notifications(2).await;
    let webhook = notifications.iter().find(|n| n["channel"] == "webhook").unwrap();
    assert_eq!(webhook["status"], "failed");
    assert_eq!(webhook["reason"], "the endpoint answered 410");
    let attempts = app.attempts(webhook["id"].as_str().unwrap()).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0]["outcome"].as_str(), attempts[0]["response_code"].as_i64()),
        (Some("permanent_failure"), Some(410))
    );
    assert_eq!(receiver.deliveries().len(), 1);
}

#[tokio::test]
async fn a_redelivery_sends_the_same_body_with_a_fresh_signature() {
    let app = Harness::start().await;
    let receiver = Receiver::start().await;
    let (endpoint, secret) = app.register_endpoint(&receiver.url, &["orders.order_confirmed"]).await;
    receiver.trust(&secret);
    app.publish("orders", &events::confirmed(Uuid::now_v7(), events::order())).await;
    let first = await_deliveries(&receiver, 1).await;
    app.settled_notifications(2).await;
    let delivery = first[0].body["id"].as_str().unwrap().to_owned();

    let (status, body) = app
        .admin(Method::POST, format!("/api/v1/webhook-endpoints/{endpoint}/deliveries/{delivery}/redeliver"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["data"]["status"], "pending");
    let both = await_deliveries(&receiver, 2).await;
    assert_eq!(both[1].body, both[0].body);
    assert!(both[1].signature_valid);
    app.settled_notifications(2).await;
    let (_, body) =
        app.admin(Method::GET, format!("/api/v1/webhook-endpoints/{endpoint}/deliveries/{delivery}"), None).await;
    assert_eq!(body["data"]["attempts"], 2);

    // Another endpoint's id does not reach this delivery.
    let (status, _) = app
        .admin(
            Method::POST,
            format!("/api/v1/webhook-endpoints/{}/deliveries/{delivery}/redeliver", Uuid::now_v7()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_creation_key_is_not_replayed_for_a_deleted_endpoint_nor_after_a_day() {
    let app = Harness::start().await;
    let receiver = Receiver::start().await;
    let (deleted_key, kept_key) = (Uuid::now_v7().to_string(), Uuid::now_v7().to_string());
    let (_, first) = app.create_endpoint(&deleted_key, &receiver.url, &["orders.order_confirmed"]).await;
    let id = first["data"]["id"].as_str().unwrap();
    let (status, _) = app.admin(Method::DELETE, format!("/api/v1/webhook-endpoints/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, again) = app.create_endpoint(&deleted_key, &receiver.url, &["orders.order_confirmed"]).await;
    assert_eq!((status, code(&again)), (StatusCode::CONFLICT, "endpoint_deleted"), "{again}");
    assert!(again.get("data").is_none(), "no secret: {again}");

    let (_, kept) = app.create_endpoint(&kept_key, &receiver.url, &["orders.order_shipped"]).await;
    let mut db = app.database.admin_connection().await.unwrap();
    sqlx::query(
        "UPDATE notifications.webhook_endpoints SET created_at = now() - interval '25 hours' WHERE id = $1::uuid",
    )
    .bind(kept["data"]["id"].as_str().unwrap())
    .execute(&mut db)
    .await
    .unwrap();
    let (status, late) = app.create_endpoint(&kept_key, &receiver.url, &["orders.order_shipped"]).await;
    assert_eq!((status, code(&late)), (StatusCode::CONFLICT, "idempotency_key_expired"), "{late}");
    assert!(!late.to_string().contains("whsec_"), "no secret: {late}");
}

#[tokio::test]
async fn creating_an_endpoint_again_with_the_same_key_answers_the_same_and_another_body_is_refused() {
    let app = Harness::start().await;
    let receiver = Receiver::start().await;
    let key = Uuid::now_v7().to_string();
    let (status, first) = app.create_endpoint(&key, &receiver.url, &["orders.order_confirmed"]).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert!(first["data"]["secret"].as_str().unwrap().starts_with("whsec_"));
    let (status, again) = app.create_endpoint(&key, &receiver.url, &["orders.order_confirmed"]).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(again["data"], first["data"]);
    let (status, other) = app.create_endpoint(&key, &receiver.url, &["orders.order_shipped"]).await;
    assert_eq!((status, code(&other)), (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"));

    // Listing and reading never show the secret.
    let (_, list) = app.admin(Method::GET, "/api/v1/webhook-endpoints", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert!(list["data"][0].get("secret").is_none());
    let id = first["data"]["id"].as_str().unwrap();
    let (_, one) = app.admin(Method::GET, format!("/api/v1/webhook-endpoints/{id}"), None).await;
    assert!(one["data"].get("secret").is_none());
    insta::assert_json_snapshot!("endpoint", one, {
        ".data.id" => "[id]", ".data.url" => "[url]", ".data.created_by" => "[id]", ".data.created_at" => "[time]", ".data.updated_at" => "[time]",
    });

    let (status, _) = app.admin(Method::DELETE, format!("/api/v1/webhook-endpoints/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.admin(Method::GET, format!("/api/v1/webhook-endpoints/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_invalid_registration_is_refused_field_by_field() {
    let app = Harness::start().await;
    let response = app
        .client
        .post(app.served.url("/api/v1/webhook-endpoints"))
        .bearer_auth(&app.admin_token)
        .header("idempotency-key", "k1")
        .json(&json!({"url": "ftp://example.com/x", "event_types": ["orders.order_placed"], "description": "d".repeat(201)}))
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    insta::assert_json_snapshot!("invalid_registration", body, { ".error.request_id" => "[request id]" });

    // Too many event types is one error, before any of them is looked at.
    let many = vec!["orders.order_placed"; 10_000];
    let (status, body) = app.create_endpoint("k2", "https://example.com/x", &many).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"].as_array().unwrap().len(), 1, "{}", body["error"]["details"][0]);
    assert_eq!(body["error"]["details"][0]["field"], "event_types");
    assert_eq!(body["error"]["details"][0]["code"], "length");

    let response = app
        .client
        .post(app.served.url("/api/v1/webhook-endpoints"))
        .bearer_auth(&app.admin_token)
        .json(&json!({"url": "https://example.com/x", "event_types": ["orders.order_confirmed"]}))
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "idempotency_key_required"));
}

#[tokio::test]
async fn webhook_endpoints_are_for_admins_only() {
    let app = Harness::start().await;
    let customer = app.token_of(Uuid::now_v7());
    let id = Uuid::now_v7();
    let routes = [
        (
            Method::POST,
            "/api/v1/webhook-endpoints".to_owned(),
            Some(json!({"url": "https://example.com", "event_types": []})),
        ),
        (Method::GET, "/api/v1/webhook-endpoints".to_owned(), None),
        (Method::GET, format!("/api/v1/webhook-endpoints/{id}"), None),
        (Method::DELETE, format!("/api/v1/webhook-endpoints/{id}"), None),
        (Method::POST, format!("/api/v1/webhook-endpoints/{id}/enable"), None),
        (Method::GET, format!("/api/v1/webhook-endpoints/{id}/deliveries"), None),
        (Method::GET, format!("/api/v1/webhook-endpoints/{id}/deliveries/{id}"), None),
        (Method::POST, format!("/api/v1/webhook-endpoints/{id}/deliveries/{id}/redeliver"), None),
        (Method::POST, format!("/api/v1/notifications/{id}/retry"), None),
    ];
    for (method, path, body) in routes {
        let (status, answer) = read(app.call(method.clone(), &path, None, body.clone()).await).await;
        assert_eq!((status, code(&answer)), (StatusCode::UNAUTHORIZED, "unauthenticated"), "{method} {path}");
        let (status, answer) = read(app.call(method.clone(), &path, Some(&customer), body).await).await;
        assert_eq!((status, code(&answer)), (StatusCode::FORBIDDEN, "forbidden"), "{method} {path}");
    }
}
