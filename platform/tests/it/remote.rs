//! Port calls between processes: the HTTP transport against a real server behind the
//! internal API's guard — what travels with a call, what is retried, how deadlines and the
//! circuit breaker behave, and who the guard lets in.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use platform::breaker::{BreakerSettings, BreakerState};
use platform::http::{ApiError, Data, HttpSettings};
use platform::metrics::Metrics;
use platform::port::CallContext;
use platform::port::remote::{RemoteCall, RemoteError, Transport};
use platform::remote::{
    HttpTransport, InternalAccess, PortCall, PortMetrics, ServiceKeys, TransportSettings, require_service_token,
};
use serde_json::{Value, json};

use crate::support::Served;

/// What the fake callee saw and how it answers.
#[derive(Clone, Default)]
struct Callee {
    calls: Arc<AtomicU32>,
    /// Answer 503 to the first this many calls.
    failures: Arc<AtomicU32>,
    /// Answer nothing for a long time.
    hang: Arc<AtomicBool>,
    seen: Arc<std::sync::Mutex<Vec<Seen>>>,
}

/// The headers of one call and the actor the callee read from them.
type Seen = (HeaderMap, Option<String>);

async fn echo(
    State(callee): State<Callee>,
    PortCall(ctx): PortCall,
    headers: HeaderMap,
) -> Result<Data<Value>, ApiError> {
    callee.calls.fetch_add(1, Ordering::SeqCst);
    callee.seen.lock().unwrap().push((headers, ctx.actor.clone()));
    if callee.hang.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    if callee.failures.load(Ordering::SeqCst) > 0 {
        callee.failures.fetch_sub(1, Ordering::SeqCst);
        return Err(ApiError::unavailable("busy", "Try again.", Duration::from_secs(1)));
    }
    let remaining = ctx.remaining().map(|d| d.as_millis());
    Ok(Data(json!({ "correlation_id": ctx.correlation_id, "remaining_ms": remaining })))
}

async fn refuse() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "thing_not_found", "No such thing.")
}

/// A served `stock` module's internal API that only `orders` may call.
async fn serve(keys: &ServiceKeys, callee: Callee) -> Served {
    let access = InternalAccess { keys: keys.clone(), callee: "stock", callers: vec!["orders"] };
    let internal = Router::new()
        .route("/echo", post(echo))
        .route("/missing", get(refuse))
        .with_state(callee)
        .route_layer(from_fn_with_state(access, require_service_token));
    Served::start(Router::new().nest("/internal/stock/v1", internal), HttpSettings::default()).await
}

fn settings() -> TransportSettings {
    TransportSettings {
        default_timeout: Duration::from_secs(5),
        max_attempts: 3,
        retry_base: Duration::from_millis(10),
        retry_max: Duration::from_millis(50),
        breaker: BreakerSettings {
            failures: 3,
            open_for: Duration::from_millis(300),
            max_open: Duration::from_secs(1),
        },
    }
}

fn transport(served: &Served, keys: &ServiceKeys, caller: &'static str, settings: TransportSettings) -> HttpTransport {
    keys.sign_for(caller).unwrap();
    let url = served.base.parse().unwrap();
    HttpTransport::new(
        reqwest::Client::new(),
        &url,
        caller,
        "stock",
        keys.clone(),
        settings,
        PortMetrics::register(&Metrics::new()),
    )
}

fn echo_call() -> RemoteCall {
    RemoteCall::post("echo", "/echo", &json!({})).unwrap().idempotent(true)
}

#[tokio::test]
async fn a_call_carries_its_context_deadline_and_a_token_naming_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ServiceKeys::open(dir.path()).unwrap();
    let callee = Callee::default();
    let served = serve(&keys, callee.clone()).await;
    let orders = transport(&served, &keys, "orders", settings());

    let mut ctx = CallContext::for_request(
        "req-1",
        Some("user-7".into()),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
    )
    .with_timeout(Duration::from_secs(2));
    ctx.correlation_id = "corr-1".into();
    let answer = orders.call(&ctx, echo_call()).await.unwrap();
    assert_eq!(answer["correlation_id"], "corr-1");
    let remaining = answer["remaining_ms"].as_u64().unwrap();
    assert!(remaining > 0 && remaining <= 2000, "the callee knows how long the answer is useful: {remaining}");

    let seen = callee.seen.lock().unwrap().clone();
    let (headers, actor) = &seen[0];
    assert_eq!(actor.as_deref(), Some("user-7"));
    assert_eq!(headers["x-request-id"], "req-1");
    assert_eq!(headers["x-causation-id"], "req-1");
    let trace = headers["traceparent"].to_str().unwrap();
    assert!(
        trace.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "the call continues the caller's trace: {trace}"
    );
}

#[tokio::test]
async fn only_declared_callers_with_service_tokens_get_in() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ServiceKeys::open(dir.path()).unwrap();
    let callee = Callee::default();
    let served = serve(&keys, callee.clone()).await;
    let url = served.url("/internal/stock/v1/echo");
    let post = |token: Option<String>| {
        let mut request = served.client.post(&url).json(&json!({}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let status_and_code = |response: reqwest::Response| async move {
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        (status, body["error"]["code"].as_str().unwrap_or_default().to_owned())
    };

    assert_eq!(status_and_code(post(None).await.unwrap()).await.0, StatusCode::UNAUTHORIZED);
    // A user's token, however privileged, is not a service token.
    let user = platform::testing::TestSigner::new();
    let verifier = platform::auth::JwtVerifier::new("bulkhead", "stock");
    user.trust(&verifier);
    let user_token = user.token(&verifier, "someone", &[platform::auth::Role::Admin]);
    assert_eq!(
        status_and_code(post(Some(user_token)).await.unwrap()).await,
        (StatusCode::UNAUTHORIZED, "invalid_token".into())
    );
    // A module that does not declare the port.
    keys.sign_for("payments").unwrap();
    let payments = keys.mint("payments", "stock").unwrap();
    assert_eq!(
        status_and_code(post(Some(payments)).await.unwrap()).await,
        (StatusCode::FORBIDDEN, "port_not_declared".into())
    );
    // A declared caller's token for another module.
    keys.sign_for("orders").unwrap();
    let elsewhere = keys.mint("orders", "users").unwrap();
    assert_eq!(status_and_code(post(Some(elsewhere)).await.unwrap()).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(callee.calls.load(Ordering::SeqCst), 0, "nothing reached the handler");

    let orders = keys.mint("orders", "stock").unwrap();
    assert_eq!(post(Some(orders)).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn transient_failures_of_idempotent_calls_are_retried_and_refusals_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ServiceKeys::open(dir.path()).unwrap();
    let callee = Callee::default();
    let served = serve(&keys, callee.clone()).await;
    let orders = transport(&served, &keys, "orders", settings());
    let ctx = CallContext::system("test");

    callee.failures.store(2, Ordering::SeqCst);
    orders.call(&ctx, echo_call()).await.unwrap();
    assert_eq!(callee.calls.load(Ordering::SeqCst), 3, "two 503s, then the answer");

    callee.failures.store(1, Ordering::SeqCst);
    let once = RemoteCall::post("echo", "/echo", &json!({})).unwrap();
    let error = orders.call(&ctx, once).await.unwrap_err();
    assert!(matches!(error, RemoteError::Unavailable(_)), "{error:?}");
    assert_eq!(callee.calls.load(Ordering::SeqCst), 4, "a call that is not idempotent is sent once");

    let refused = orders.call(&ctx, RemoteCall::get("missing", "/missing")).await.unwrap_err();
    assert_eq!(
        refused,
        RemoteError::Refused { status: 404, code: "thing_not_found".into(), message: "No such thing.".into() }
    );
}

#[tokio::test]
async fn a_callee_that_does_not_answer_times_out_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ServiceKeys::open(dir.path()).unwrap();
    let callee = Callee::default();
    callee.hang.store(true, Ordering::SeqCst);
    let served = serve(&keys, callee.clone()).await;
    let orders = transport(&served, &keys, "orders", settings());

    let started = Instant::now();
    let ctx = CallContext::system("test").with_timeout(Duration::from_millis(300));
    let error = orders.call(&ctx, echo_call()).await.unwrap_err();
    assert_eq!(error, RemoteError::Timeout);
    // Retries stay inside the deadline: the caller is answered about when it stops waiting.
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test]
async fn the_breaker_opens_on_a_failing_callee_fails_fast_and_closes_when_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ServiceKeys::open(dir.path()).unwrap();
    let callee = Callee::default();
    let served = serve(&keys, callee.clone()).await;
    let orders = transport(&served, &keys, "orders", TransportSettings { max_attempts: 1, ..settings() });
    let ctx = CallContext::system("test");

    callee.failures.store(1000, Ordering::SeqCst);
    for _ in 0..3 {
        assert!(matches!(orders.call(&ctx, echo_call()).await, Err(RemoteError::Unavailable(_))));
    }
    assert_eq!(orders.breaker().state(), BreakerState::Open);
    let before = callee.calls.load(Ordering::SeqCst);
    let error = orders.call(&ctx, echo_call()).await.unwrap_err();
    assert!(matches!(&error, RemoteError::Unavailable(reason) if reason.contains("circuit breaker")), "{error:?}");
    assert_eq!(callee.calls.load(Ordering::SeqCst), before, "an open breaker leaves the callee alone");

    callee.failures.store(0, Ordering::SeqCst);
    let recovered = platform::testing::eventually(Duration::from_secs(10), || async {
        Ok(orders.call(&ctx, echo_call()).await.ok())
    })
    .await;
    assert!(recovered.is_ok(), "a probe after the open period closes the breaker");
    assert_eq!(orders.breaker().state(), BreakerState::Closed);
}

#[tokio::test]
async fn an_unreachable_process_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ServiceKeys::open(dir.path()).unwrap();
    keys.sign_for("orders").unwrap();
    let nowhere = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let url = format!("http://{nowhere}").parse().unwrap();
    let orders = HttpTransport::new(
        reqwest::Client::new(),
        &url,
        "orders",
        "stock",
        keys,
        settings(),
        PortMetrics::register(&Metrics::new()),
    );
    let error = orders.call(&CallContext::system("test"), echo_call()).await.unwrap_err();
    assert!(matches!(error, RemoteError::Unavailable(_)), "{error:?}");
}
