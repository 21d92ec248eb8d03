//! What every deployment offers whatever modules it hosts: health, readiness, metrics, the
//! OpenAPI document and its UI, and the HTTP conventions on unknown routes.

use std::time::Duration;

use bulkhead_tests::{TestApp, Topology, eventually};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Connection;

async fn liveness_and_readiness_answer_in_the_envelope(topology: Topology) {
    let app = TestApp::spawn_on(topology, &[]).await;
    let live = app.get("/health").await;
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(live.json::<Value>().await.unwrap(), serde_json::json!({ "data": { "status": "ok" }, "meta": {} }));

    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), StatusCode::OK);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["data"]["status"], "ready");
    let checks = body["data"]["checks"].as_object().unwrap();
    assert!(checks.iter().filter(|(name, _)| *name != "bus").all(|(_, v)| v == "ok"), "{body}");
    assert!(["ok", "idle (no module hosted)"].contains(&checks["bus"].as_str().unwrap()), "{body}");
    app.stop().await.unwrap();
}

async fn readiness_fails_with_503_when_the_database_goes_away(topology: Topology) {
    let app = TestApp::spawn_on(topology, &[]).await;
    let (server, _) = platform::testing::server_admin().await.unwrap();
    let mut admin = sqlx::PgConnection::connect_with(&server).await.unwrap();
    // Refuse new connections and end existing ones: the pools lose the database.
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false", app.database.name)))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&app.database.name)
        .execute(&mut admin)
        .await
        .unwrap();

    let body: Value = eventually(Duration::from_secs(10), || async {
        let response = app.get("/health/ready").await;
        Ok((response.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(response.json().await?))
    })
    .await
    .unwrap();
    assert_eq!(body["error"]["code"], "not_ready");
    assert!(body["error"]["details"]["database"].as_str().unwrap() != "ok", "{body}");
    assert_eq!(app.get("/health").await.status(), StatusCode::OK, "liveness does not depend on the database");
}

async fn metrics_count_requests_by_route_template(topology: Topology) {
    let app = TestApp::spawn_on(topology, &[]).await;
    // The split's harness asks every process for readiness while it starts: count from here.
    let ready_count = |text: &str| -> u64 {
        text.lines()
            .find_map(|line| {
                line.strip_prefix(r#"http_requests_total{method="GET",route="/health/ready",status="200"} "#)
            })
            .and_then(|count| count.parse().ok())
            .unwrap_or(0)
    };
    let before = ready_count(&app.get("/metrics").await.text().await.unwrap());
    app.get("/health/ready").await;
    app.get("/no/such/page").await;
    let response = app.get("/metrics").await;
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = response.text().await.unwrap();
    assert_eq!(ready_count(&text), before + 1, "{text}");
    assert!(text.contains(r#"http_requests_total{method="GET",route="unmatched",status="404"} 1"#), "{text}");
    assert!(text.contains("http_request_duration_seconds_bucket"), "{text}");
}

async fn the_openapi_document_is_served_and_stable(topology: Topology) {
    let app = TestApp::spawn_on(topology, &[]).await;
    let spec: Value = app.get("/api/openapi.json").await.json().await.unwrap();
    insta::assert_json_snapshot!("openapi", spec, { ".info.version" => "[version]" });
}

async fn swagger_ui_renders_offline_from_vendored_assets(topology: Topology) {
    let app = TestApp::spawn_on(topology, &[]).await;
    let page = app.client.get(app.url("/api/docs/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    for asset in ["/api/docs/swagger-ui.css", "/api/docs/swagger-ui-bundle.js", "/api/docs/swagger-initializer.js"] {
        let response = app.get(asset).await;
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
    }
    let initializer = app.get("/api/docs/swagger-initializer.js").await.text().await.unwrap();
    assert!(initializer.contains("/api/openapi.json"), "{initializer}");
}

async fn unknown_api_routes_and_wrong_methods_get_the_envelope(topology: Topology) {
    let app = TestApp::spawn_on(topology, &[]).await;
    let missing = app.get("/api/v1/nothing-here").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let request_id = missing.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(body["error"]["request_id"], request_id);

    let wrong = app.client.delete(app.url("/health")).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.json::<Value>().await.unwrap()["error"]["code"], "method_not_allowed");
}

async fn the_api_is_rate_limited_per_client_but_health_checks_are_not(topology: Topology) {
    let app = TestApp::spawn_on(topology, &["--rate-limit-per-second", "1", "--rate-limit-burst", "2"]).await;
    let statuses = futures_statuses(&app, "/api/v1/anything", 4).await;
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    let health = futures_statuses(&app, "/health", 10).await;
    assert!(health.iter().all(|s| *s == StatusCode::OK), "{health:?}");
}

async fn futures_statuses(app: &TestApp, path: &str, count: usize) -> Vec<StatusCode> {
    let mut statuses = Vec::new();
    for _ in 0..count {
        statuses.push(app.get(path).await.status());
    }
    statuses
}

async fn a_graceful_stop_finishes_cleanly(topology: Topology) {
    let app = TestApp::spawn_on(topology, &[]).await;
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
    let address = app.address;
    app.stop().await.unwrap();
    assert!(tokio::net::TcpStream::connect(address).await.is_err(), "the listener is closed");
}

async fn the_bus_admin_api_answers_admins_only(topology: Topology) {
    let app = TestApp::spawn_on(topology, &[]).await;
    let path = "/api/v1/admin/bus/subscriptions";
    assert_eq!(app.get(path).await.status(), StatusCode::UNAUTHORIZED);
    let customer = app.client.get(app.url(path)).bearer_auth(app.customer_token()).send().await.unwrap();
    assert_eq!(customer.status(), StatusCode::FORBIDDEN);
    let admin = app.client.get(app.url(path)).bearer_auth(app.admin_token()).send().await.unwrap();
    assert_eq!(admin.status(), StatusCode::OK);
    let body: Value = admin.json().await.unwrap();
    assert!(body["data"].is_array(), "{body}");

    let ready: Value = app.get("/health/ready").await.json().await.unwrap();
    assert!(ready["data"]["checks"]["bus"].is_string(), "{ready}");
}

async fn responses_carry_security_headers_are_compressed_and_cors_admits_only_configured_origins(topology: Topology) {
    let app = TestApp::spawn_on(topology, &["--cors-origins", "https://shop.example"]).await;
    let response = app.client.get(app.url("/api/openapi.json")).header("accept-encoding", "gzip").send().await.unwrap();
    let headers = response.headers();
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["content-encoding"], "gzip", "large responses are compressed when asked");

    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/api/v1/admin/bus/subscriptions"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let allowed = preflight("https://shop.example").await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://shop.example");
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(!refused.headers().contains_key("access-control-allow-origin"));
}

on_every_topology!(
    liveness_and_readiness_answer_in_the_envelope,
    readiness_fails_with_503_when_the_database_goes_away,
    metrics_count_requests_by_route_template,
    the_openapi_document_is_served_and_stable,
    swagger_ui_renders_offline_from_vendored_assets,
    unknown_api_routes_and_wrong_methods_get_the_envelope,
    the_api_is_rate_limited_per_client_but_health_checks_are_not,
    a_graceful_stop_finishes_cleanly,
    the_bus_admin_api_answers_admins_only,
    responses_carry_security_headers_are_compressed_and_cors_admits_only_configured_origins,
);

#[tokio::test]
async fn without_migrating_on_start_the_server_waits_unready_until_migrate_up_has_run() {
    // A database with nothing of users' yet, as a fresh cluster before the migration Job.
    let database = platform::testing::TestDatabase::create(&[]).await.unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (addr, url, dir) = (format!("127.0.0.1:{port}"), database.url(), data_dir.path().display().to_string());
    let args = [
        "bulkhead",
        "--addr",
        &addr,
        "--database-url",
        secrecy::ExposeSecret::expose_secret(&url),
        "--data-dir",
        &dir,
        "--modules",
        "users",
        "--migrate-on-start",
        "false",
    ];
    let config = <bulkhead::Cli as clap::Parser>::try_parse_from(args).unwrap().config;
    let starting = tokio::spawn(bulkhead::Application::build(config.clone()));

    let client = reqwest::Client::new();
    let (live, ready) = (format!("http://{addr}/health"), format!("http://{addr}/health/ready"));
    let waiting: Value = eventually(Duration::from_secs(20), || async {
        let response = client.get(&ready).send().await?;
        Ok((response.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(response.json().await?))
    })
    .await
    .expect("no readiness answer while waiting for migrations");
    assert_eq!(waiting["error"]["code"], "not_ready");
    assert_eq!(waiting["error"]["details"]["users.database_and_migrations"], "migrations pending", "{waiting}");
    assert_eq!(client.get(&live).send().await.unwrap().status(), StatusCode::OK, "alive while waiting");
    assert!(!starting.is_finished(), "nothing starts before the migrations are applied");

    bulkhead::cli::migrate(&config, bulkhead::config::MigrateAction::Up { module: None }).await.unwrap();
    let application = tokio::time::timeout(Duration::from_secs(20), starting).await.unwrap().unwrap().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(application.run_until_stopped(shutdown.clone()));
    let response = client.get(&ready).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", response.text().await.unwrap());
    shutdown.cancel();
    server.await.unwrap().unwrap();
}
