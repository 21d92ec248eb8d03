//! `Idempotency-Key` against a module's real `idempotency_keys` table.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::middleware::from_fn_with_state;
use axum::routing::post;
use platform::auth::Role;
use platform::http::idempotency::{self, Idempotency};
use platform::http::{ApiError, Created, HttpSettings, Json};
use platform::testing::TestDatabase;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::auth::{TestKey, claims, verifier_trusting};
use crate::support::{SCHEMAS, Served};

#[derive(Clone)]
struct Widgets {
    pool: PgPool,
    /// Fail the next N requests with a 500, to see that failures are not replayed.
    fail_next: Arc<AtomicUsize>,
    /// When set, handlers wait here until released, to hold a request in flight.
    gate: Option<(Arc<Notify>, Arc<Notify>)>,
}

async fn create_widget(State(widgets): State<Widgets>, Json(body): Json<Value>) -> Result<Created<Value>, ApiError> {
    if body["name"] == "taken" {
        return Err(ApiError::conflict("name_taken", "A widget with this name exists.")
            .with_details(json!({ "name": "taken" })));
    }
    if let Some((entered, release)) = &widgets.gate {
        entered.notify_one();
        release.notified().await;
    }
    if widgets.fail_next.load(Ordering::SeqCst) > 0 {
        widgets.fail_next.fetch_sub(1, Ordering::SeqCst);
        return Err(ApiError::internal(anyhow::anyhow!("flaky dependency")));
    }
    let id = uuid::Uuid::now_v7();
    sqlx::query("INSERT INTO widgets (id, name) VALUES ($1, $2)")
        .bind(id)
        .bind(body["name"].as_str().unwrap_or("unnamed"))
        .execute(&widgets.pool)
        .await?;
    Ok(Created::new(format!("/widgets/{id}"), json!({ "id": id, "name": body["name"] })))
}

struct Fixture {
    app: Served,
    pool: PgPool,
    widgets: Widgets,
}

async fn fixture(gate: Option<(Arc<Notify>, Arc<Notify>)>, key: Option<&TestKey>) -> Fixture {
    fixture_with_lease(gate, key, None).await
}

async fn fixture_with_lease(
    gate: Option<(Arc<Notify>, Arc<Notify>)>,
    key: Option<&TestKey>,
    lease: Option<Duration>,
) -> Fixture {
    let database = TestDatabase::create(&SCHEMAS).await.unwrap();
    let pool = database.connect(&SCHEMAS).await.unwrap().pool("alpha").unwrap().clone();
    let widgets = Widgets { pool: pool.clone(), fail_next: Arc::default(), gate };
    let mut config = Idempotency::new(pool.clone()).required();
    if let Some(lease) = lease {
        config = config.lease(lease);
    }
    if let Some(key) = key {
        config = config.scoped_by(verifier_trusting(key));
    }
    let router = Router::new()
        .route("/widgets", post(create_widget))
        .route_layer(from_fn_with_state(config, idempotency::middleware))
        .with_state(widgets.clone());
    Fixture { app: Served::start(router, HttpSettings::default()).await, pool, widgets }
}

impl Fixture {
    /// The request creating a sprocket under `key`, not sent yet (tests send it twice).
    fn sprocket(&self, key: &str) -> reqwest::RequestBuilder {
        self.app
            .client
            .post(self.app.url("/widgets"))
            .header("idempotency-key", key)
            .json(&json!({ "name": "sprocket" }))
    }

    /// POST /widgets with an idempotency key, as `token`'s subject when given.
    async fn post(&self, key: &str, body: Value, token: Option<&str>) -> reqwest::Response {
        let request = self.app.client.post(self.app.url("/widgets")).header("idempotency-key", key).json(&body);
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        request.send().await.unwrap()
    }
}

async fn widget_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM widgets").fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn the_same_key_and_body_replays_the_first_response_and_creates_once() {
    let f = fixture(None, None).await;
    let send = || f.post("key-1", json!({ "name": "sprocket" }), None);

    let first = send().await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let location = first.headers()["location"].clone();
    let first_body: Value = first.json().await.unwrap();

    let again = send().await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["location"], location);
    assert_eq!(again.json::<Value>().await.unwrap(), first_body);
    assert_eq!(widget_count(&f.pool).await, 1);
}

#[tokio::test]
async fn the_same_key_with_a_different_body_is_422() {
    let f = fixture(None, None).await;
    let send = |name: &str| f.post("key-1", json!({ "name": name }), None);
    assert_eq!(send("sprocket").await.status(), StatusCode::CREATED);
    let reused = send("flange").await;
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.json::<Value>().await.unwrap()["error"]["code"], "idempotency_key_reused");
    assert_eq!(widget_count(&f.pool).await, 1);
}

#[tokio::test]
async fn a_concurrent_duplicate_is_409_while_the_first_is_in_flight() {
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let f = fixture(Some((entered.clone(), release.clone())), None).await;
    let request = f.sprocket("key-1");
    let first = tokio::spawn(request.try_clone().unwrap().send());
    entered.notified().await;

    let duplicate = request.send().await.unwrap();
    assert_eq!(duplicate.status(), StatusCode::CONFLICT);
    assert!(duplicate.headers().contains_key("retry-after"));
    assert_eq!(duplicate.json::<Value>().await.unwrap()["error"]["code"], "idempotency_request_in_progress");

    release.notify_one();
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::CREATED);
    assert_eq!(widget_count(&f.pool).await, 1);
}

#[tokio::test]
async fn a_server_error_is_not_stored_so_the_retry_runs_again() {
    let f = fixture(None, None).await;
    f.widgets.fail_next.store(1, Ordering::SeqCst);
    let send = || f.post("key-1", json!({ "name": "sprocket" }), None);
    assert_eq!(send().await.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let retry = send().await;
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert!(!retry.headers().contains_key("idempotent-replayed"));
    assert_eq!(widget_count(&f.pool).await, 1);
}

#[tokio::test]
async fn a_required_key_that_is_missing_or_malformed_is_400() {
    let f = fixture(None, None).await;
    let missing = f.app.client.post(f.app.url("/widgets")).json(&json!({ "name": "sprocket" })).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    assert_eq!(missing.json::<Value>().await.unwrap()["error"]["code"], "idempotency_key_required");
    let too_long = f.post(&"k".repeat(300), json!({ "name": "sprocket" }), None).await;
    assert_eq!(too_long.status(), StatusCode::BAD_REQUEST);
    assert_eq!(widget_count(&f.pool).await, 0);
}

#[tokio::test]
async fn keys_are_scoped_to_the_caller() {
    let key = TestKey::generate("k1");
    let f = fixture(None, Some(&key)).await;
    let (alice, bob) = (key.sign(&claims("alice", &[Role::Customer])), key.sign(&claims("bob", &[Role::Customer])));
    for (token, name) in [(&alice, "sprocket"), (&bob, "flange")] {
        let response = f.post("same-key", json!({ "name": name }), Some(token)).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{name}");
    }
    assert_eq!(widget_count(&f.pool).await, 2);
    assert_eq!(idempotency::purge_expired(&f.pool).await.unwrap(), 0, "fresh records are kept");
}

#[tokio::test]
async fn a_replayed_refusal_keeps_its_code_and_details_under_a_new_request_id() {
    let f = fixture(None, None).await;
    let send = || f.post("key-1", json!({ "name": "taken" }), None);
    let first = send().await;
    assert_eq!(first.status(), StatusCode::CONFLICT);
    let first: Value = first.json().await.unwrap();

    let replay = send().await;
    assert_eq!(replay.status(), StatusCode::CONFLICT);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let request_id = replay.headers()["x-request-id"].to_str().unwrap().to_owned();
    let replayed: Value = replay.json().await.unwrap();
    assert_eq!(replayed["error"]["code"], "name_taken");
    assert_eq!(replayed["error"]["details"], first["error"]["details"]);
    assert_eq!(replayed["error"]["request_id"], request_id.as_str());
    assert_ne!(replayed["error"]["request_id"], first["error"]["request_id"]);
}

#[tokio::test]
async fn a_long_request_keeps_its_key_by_renewing_its_lease() {
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let f = fixture_with_lease(Some((entered.clone(), release.clone())), None, Some(Duration::from_millis(300))).await;
    let request = f.sprocket("key-1");
    let first = tokio::spawn(request.try_clone().unwrap().send());
    entered.notified().await;
    // Several leases go by while the first request runs: it renews its hold on the key.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let duplicate = request.send().await.unwrap();
    assert_eq!(duplicate.status(), StatusCode::CONFLICT);

    release.notify_one();
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::CREATED);
    assert_eq!(widget_count(&f.pool).await, 1);
}

#[tokio::test]
async fn a_key_left_in_flight_by_a_crashed_process_is_free_after_one_lease() {
    let lease = Duration::from_secs(1);
    let f = fixture_with_lease(None, None, Some(lease)).await;
    let body = json!({ "name": "sprocket" });
    // What a process killed mid-request leaves: the claim, never renewed again, no outcome.
    let fingerprint = {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        hash.update(format!("POST /widgets\n{body}"));
        hash.finalize().to_vec()
    };
    sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, locked_until, expires_at)
         VALUES ('anonymous', 'key-1', $1, now() + $2, now() + interval '1 day')",
    )
    .bind(&fingerprint)
    .bind(lease)
    .execute(&f.pool)
    .await
    .unwrap();

    assert_eq!(f.post("key-1", body.clone(), None).await.status(), StatusCode::CONFLICT, "while the lease runs");
    let started = std::time::Instant::now();
    let retried = platform::testing::eventually(Duration::from_secs(5), || async {
        let response = f.post("key-1", body.clone(), None).await;
        Ok((response.status() == StatusCode::CREATED).then_some(started.elapsed()))
    })
    .await
    .unwrap();
    assert!(retried < Duration::from_secs(3), "free after one lease, not a minute: {retried:?}");
    assert_eq!(widget_count(&f.pool).await, 1);
}
