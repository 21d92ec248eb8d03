//! Every failure class leaves in the envelope with the request id, framework defaults included.

use std::num::NonZeroU32;
use std::time::Duration;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use platform::http::rate_limit::limit_by_client;
use platform::http::{ApiError, ClientRateLimit, Created, Data, HttpSettings, Path, Query, TraceParent, ValidJson};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use validator::Validate;

use crate::support::Served;

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
struct NewItem {
    #[validate(length(min = 1, max = 20))]
    name: String,
    #[validate(range(min = 1, max = 100))]
    quantity: u32,
    #[validate(email)]
    contact: String,
    #[validate(nested)]
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
struct Part {
    #[validate(length(min = 3))]
    sku: String,
}

#[derive(Debug, Deserialize)]
struct Listing {
    #[expect(dead_code, reason = "only its parsing is under test")]
    limit: u32,
}

async fn create(ValidJson(item): ValidJson<NewItem>) -> Created<Value> {
    Created::new("/items/1", json!({ "name": item.name, "quantity": item.quantity }))
}

fn router() -> Router {
    Router::new()
        .route("/items", post(create).get(|Query(_): Query<Listing>| async { Data(json!([])) }))
        .route("/items/{id}", get(|Path(id): Path<uuid::Uuid>| async move { Data(json!({ "id": id })) }))
        .route(
            "/trace",
            get(|axum::Extension(trace): axum::Extension<TraceParent>| async move {
                Data(json!({ "traceparent": trace.0 }))
            }),
        )
        .route("/conflict", get(|| async { ApiError::conflict("already_exists", "An item with this name exists.") }))
        .route(
            "/broken",
            get(|| async {
                ApiError::internal(anyhow::anyhow!("password authentication failed for user bulkhead_orders"))
            }),
        )
        .route(
            "/panics",
            get(|| async {
                if true {
                    panic!("handler bug")
                }
            }),
        )
        .route("/slow", get(|| async { tokio::time::sleep(Duration::from_secs(5)).await }))
        .merge(
            Router::new()
                .route("/limited", get(|| async { Data("ok") }))
                .layer(from_fn_with_state(ClientRateLimit::new(NonZeroU32::MIN, NonZeroU32::MIN), limit_by_client)),
        )
}

async fn served() -> Served {
    let settings =
        HttpSettings { body_limit_bytes: 1024, request_timeout: Duration::from_millis(300), ..HttpSettings::default() };
    Served::start(router(), settings).await
}

/// Sends a request and returns status, headers and JSON body, after checking the envelope
/// carries the response's request id.
async fn envelope(request: reqwest::RequestBuilder) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    assert_eq!(headers["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["request_id"], headers["x-request-id"].to_str().unwrap(), "{body}");
    (status, headers, body)
}

macro_rules! assert_envelope_snapshot {
    ($name:literal, $body:expr) => {
        insta::assert_json_snapshot!($name, $body, { ".error.request_id" => "[request_id]" })
    };
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = served().await;
    let (status, _, body) =
        envelope(app.client.post(app.url("/items")).header("content-type", "application/json").body("{\"name\": "))
            .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_envelope_snapshot!("malformed_json", body);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let app = served().await;
    let (status, _, body) =
        envelope(app.client.post(app.url("/items")).header("content-type", "text/plain").body("hello")).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_envelope_snapshot!("unsupported_media_type", body);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_whether_declared_or_streamed() {
    let app = served().await;
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(4096));
    let (status, _, body) =
        envelope(app.client.post(app.url("/items")).header("content-type", "application/json").body(big.clone())).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_envelope_snapshot!("payload_too_large", body);

    // Without a Content-Length the limit trips while reading.
    let stream = futures::stream::iter([Ok::<_, std::io::Error>(big.into_bytes())]);
    let (status, _, _) = envelope(
        app.client
            .post(app.url("/items"))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(stream)),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn an_unknown_route_is_404_and_a_wrong_method_405() {
    let app = served().await;
    let (status, _, body) = envelope(app.client.get(app.url("/nowhere"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_envelope_snapshot!("unknown_route", body);

    let (status, headers, body) = envelope(app.client.delete(app.url("/items"))).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(headers["allow"].to_str().unwrap().contains("POST"));
    assert_envelope_snapshot!("method_not_allowed", body);
}

#[tokio::test]
async fn invalid_fields_are_422_with_one_entry_per_field() {
    let app = served().await;
    let item =
        json!({ "name": "", "quantity": 0, "contact": "not-an-email", "parts": [{ "sku": "ok-sku" }, { "sku": "x" }] });
    let (status, _, body) = envelope(app.client.post(app.url("/items")).json(&item)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_envelope_snapshot!("validation_failed", body);
}

#[tokio::test]
async fn unknown_and_mistyped_fields_are_422() {
    let app = served().await;
    let item = json!({ "name": "bolt", "quantity": 1, "contact": "a@b.example", "colour": "red" });
    let (status, _, body) = envelope(app.client.post(app.url("/items")).json(&item)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_envelope_snapshot!("unknown_field", body);

    let item = json!({ "name": "bolt", "quantity": "many", "contact": "a@b.example" });
    let (status, _, body) = envelope(app.client.post(app.url("/items")).json(&item)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["code"], "invalid_body");
}

#[tokio::test]
async fn a_valid_body_passes_and_gets_201_with_location() {
    let app = served().await;
    let item = json!({ "name": "bolt", "quantity": 3, "contact": "a@b.example" });
    let response = app.client.post(app.url("/items")).json(&item).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["location"], "/items/1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({ "data": { "name": "bolt", "quantity": 3 }, "meta": {} }));
}

#[tokio::test]
async fn bad_query_strings_are_400_and_unparsable_ids_404() {
    let app = served().await;
    let (status, _, body) = envelope(app.client.get(app.url("/items?limit=lots"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_envelope_snapshot!("invalid_query", body);

    let (status, _, body) = envelope(app.client.get(app.url("/items/not-a-uuid"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn a_conflict_is_409() {
    let app = served().await;
    let (status, _, body) = envelope(app.client.get(app.url("/conflict"))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_envelope_snapshot!("conflict", body);
}

#[tokio::test]
async fn too_many_requests_are_429_with_retry_after() {
    let app = served().await;
    assert_eq!(app.client.get(app.url("/limited")).send().await.unwrap().status(), StatusCode::OK);
    let (status, headers, body) = envelope(app.client.get(app.url("/limited"))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_envelope_snapshot!("rate_limited", body);
}

#[tokio::test]
async fn internal_errors_and_panics_are_500_and_reveal_nothing() {
    let app = served().await;
    let (status, _, body) = envelope(app.client.get(app.url("/broken"))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!body.to_string().contains("bulkhead_orders"), "{body}");
    assert_envelope_snapshot!("internal_error", body);

    let (status, _, panicked) = envelope(app.client.get(app.url("/panics"))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(panicked["error"]["code"], "internal_error");
    assert!(!panicked.to_string().contains("handler bug"));
}

#[tokio::test]
async fn a_request_past_the_timeout_is_408() {
    let app = served().await;
    let (status, _, body) = envelope(app.client.get(app.url("/slow"))).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert_envelope_snapshot!("request_timeout", body);
}

#[tokio::test]
async fn a_callers_request_id_is_kept_and_a_bad_one_replaced() {
    let app = served().await;
    let response = app.client.get(app.url("/nowhere")).header("x-request-id", "trace-abc-123").send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-abc-123");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["request_id"], "trace-abc-123");

    let response =
        app.client.get(app.url("/nowhere")).header("x-request-id", "has spaces and <script>").send().await.unwrap();
    let assigned = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&assigned).is_ok(), "{assigned}");

    let response = app.client.get(app.url("/items/0193b5f2-8a4e-7c3d-9a51-3f0c2b6d7e81")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("x-request-id"), "successes carry the id too");
}

#[tokio::test]
async fn requests_are_counted_by_route_template_method_and_status() {
    let app = served().await;
    for path in
        ["/items/0193b5f2-8a4e-7c3d-9a51-3f0c2b6d7e81", "/items/0193b5f2-8a4e-7c3d-9a51-3f0c2b6d7e82", "/conflict"]
    {
        app.client.get(app.url(path)).send().await.unwrap();
    }
    let rendered = app.metrics.render();
    assert!(rendered.contains(r#"http_requests_total{method="GET",route="/items/{id}",status="200"} 2"#), "{rendered}");
    assert!(rendered.contains(r#"http_requests_total{method="GET",route="/conflict",status="409"} 1"#), "{rendered}");
    assert!(
        rendered.contains(r#"http_request_duration_seconds_count{method="GET",route="/items/{id}",status="200"} 2"#),
        "{rendered}"
    );
}

#[tokio::test]
async fn a_callers_trace_is_continued_and_otherwise_one_is_started() {
    let app = served().await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let body: Value =
        app.client.get(app.url("/trace")).header("traceparent", incoming).send().await.unwrap().json().await.unwrap();
    let continued = body["data"]["traceparent"].as_str().unwrap();
    assert!(continued.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{continued}");
    assert_ne!(continued, incoming, "a new span in the caller's trace");

    for header in [None, Some("garbage")] {
        let request = app.client.get(app.url("/trace"));
        let request = match header {
            Some(value) => request.header("traceparent", value),
            None => request,
        };
        let body: Value = request.send().await.unwrap().json().await.unwrap();
        let started = body["data"]["traceparent"].as_str().unwrap();
        assert!(platform::bus::event::traceparent::trace_id(started).is_some(), "{started}");
        assert!(!started.contains("4bf92f3577b34da6a3ce929d0e0e4736"));
    }
}
