//! Changing permissions (ADR 0020): a demoted admin, a closed account and a signed-out session
//! lose what their still-unexpired access tokens claimed on every module's routes — at once
//! in the monolith, within a notification's round trip on the split, where every other
//! module's process learns of it from users' outbox; and a verifier that shares no memory
//! with the users module (built beside the app, on the same database) learns of it too.

use std::time::Duration;

use bulkhead_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, Topology, eventually};
use platform::auth::JwtVerifier;
use platform::auth::revocation::{RevocationFeed, Revoked};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::role_matrix::{Access, access_of, documented_operations};
use crate::shop::customer;

async fn user_id(app: &TestApp, token: &str) -> String {
    let me: Value = app.get_as("/api/v1/users/me", token).await.json().await.unwrap();
    me["data"]["id"].as_str().unwrap().to_owned()
}

async fn set_roles(app: &TestApp, admin: &str, user: &str, roles: &[&str]) {
    let response = app
        .client
        .put(app.url(&format!("/api/v1/users/{user}/roles")))
        .bearer_auth(admin)
        .json(&json!({ "roles": roles }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", response.text().await.unwrap());
}

/// A second admin, signed in: their token claims the admin role.
async fn second_admin(app: &TestApp, first: &str) -> (String, String) {
    customer(app, "deputy@example.com").await;
    let as_customer = app.sign_in("deputy@example.com", "a perfectly fine passphrase").await;
    let id = user_id(app, &as_customer).await;
    set_roles(app, first, &id, &["customer", "admin"]).await;
    (id, app.sign_in("deputy@example.com", "a perfectly fine passphrase").await)
}

/// Waits until `path` refuses `token` as `invalid_token`: at once in the monolith (the users
/// module tells its process's verifier in the same breath), soon on the split (the other
/// processes read users' outbox when it notifies).
async fn expect_refused(app: &TestApp, path: &str, token: &str) {
    let refused = || async {
        let response = app.get_as(path, token).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        (status == StatusCode::UNAUTHORIZED && body["error"]["code"] == "invalid_token").then_some(())
    };
    match app.topology {
        Topology::Monolith => assert!(refused().await.is_some(), "{path} right after the change"),
        Topology::Split | Topology::SplitOverKafka => {
            eventually(Duration::from_secs(10), || async { Ok(refused().await) })
                .await
                .unwrap_or_else(|_| panic!("{path} kept accepting the token after the change"))
        }
    }
}

async fn a_demoted_admin_is_refused_on_every_modules_admin_routes(topology: Topology) {
    let app = TestApp::spawn_on(topology, &["--rate-limit-per-second", "0"]).await;
    let first = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (deputy, token) = second_admin(&app, &first).await;
    let admin_reads: Vec<String> = documented_operations(&app)
        .await
        .into_iter()
        .filter(|op| op.method == Method::GET && !op.path.contains('{'))
        .filter(|op| access_of(&op.method, &op.path) == Some(Access::Admin))
        .map(|op| op.path)
        .collect();
    for module in ["/admin/bus/", "/admin/jobs/", "/users", "/payments/", "/webhook-endpoints"] {
        assert!(admin_reads.iter().any(|path| path.contains(module)), "no admin read of {module} in {admin_reads:?}");
    }
    for path in &admin_reads {
        assert_eq!(app.get_as(path, &token).await.status(), StatusCode::OK, "{path} before the demotion");
    }
    let create_product =
        json!({ "sku": "DEPUTY-1", "name": "Deputy's", "price": { "amount": 100, "currency": "EUR" } });

    set_roles(&app, &first, &deputy, &["customer"]).await;

    for path in &admin_reads {
        expect_refused(&app, path, &token).await;
    }
    let response = app.post("/api/v1/products", Some(&token), &create_product).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "products, through the other admin path");
    let orders = app.get_as("/api/v1/orders?user_id=00000000-0000-7000-8000-000000000000", &token).await;
    assert_eq!(orders.status(), StatusCode::UNAUTHORIZED, "other customers' orders");

    // Signing in again gives a token with what the user holds now: a customer's.
    let fresh = app.sign_in("deputy@example.com", "a perfectly fine passphrase").await;
    assert_eq!(app.get_as("/api/v1/users/me", &fresh).await.status(), StatusCode::OK);
    assert_eq!(app.get_as("/api/v1/admin/bus/subscriptions", &fresh).await.status(), StatusCode::FORBIDDEN);

    // Promoted back, a fresh admin token works again.
    set_roles(&app, &first, &deputy, &["customer", "admin"]).await;
    let promoted = app.sign_in("deputy@example.com", "a perfectly fine passphrase").await;
    assert_eq!(app.get_as("/api/v1/admin/bus/subscriptions", &promoted).await.status(), StatusCode::OK);
    app.stop().await.unwrap();
}

async fn a_closed_account_and_a_signed_out_session_are_refused(topology: Topology) {
    let app = TestApp::spawn_on(topology, &[]).await;
    let first = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;

    let closed = customer(&app, "closed@example.com").await;
    let closed_id = user_id(&app, &closed).await;
    let response = app.post(&format!("/api/v1/users/{closed_id}/deactivate"), Some(&first), &json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);
    for path in ["/api/v1/users/me", "/api/v1/orders", "/api/v1/payments", "/api/v1/notifications"] {
        expect_refused(&app, path, &closed).await;
    }

    customer(&app, "leaving@example.com").await;
    let login = json!({ "email": "leaving@example.com", "password": "a perfectly fine passphrase" });
    let tokens: Value = app.post("/api/v1/auth/login", None, &login).await.json().await.unwrap();
    let access = tokens["data"]["access_token"].as_str().unwrap();
    let other_session = app.sign_in("leaving@example.com", "a perfectly fine passphrase").await;
    assert_eq!(app.get_as("/api/v1/orders", access).await.status(), StatusCode::OK);
    let logout = json!({ "refresh_token": tokens["data"]["refresh_token"] });
    assert_eq!(app.post("/api/v1/auth/logout", None, &logout).await.status(), StatusCode::NO_CONTENT);
    expect_refused(&app, "/api/v1/orders", access).await;
    assert_eq!(app.get_as("/api/v1/orders", &other_session).await.status(), StatusCode::OK, "only that session");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_process_that_shares_no_memory_with_users_learns_revocations_from_its_outbox() {
    let app = TestApp::spawn().await;
    let first = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (deputy, token) = second_admin(&app, &first).await;
    let jwks: Value = app.get("/.well-known/jwks.json").await.json().await.unwrap();
    let pool = sqlx::PgPool::connect(app.database.url().expose_secret()).await.unwrap();
    let stop = CancellationToken::new();

    // Another process: its own verifier, trusting the JWKS, fed from the database only.
    let elsewhere = JwtVerifier::new("bulkhead", "bulkhead-api");
    elsewhere.set_jwks(&serde_json::from_value(jwks.clone()).unwrap()).unwrap();
    RevocationFeed::new(pool.clone(), elsewhere.revocations().clone()).start(None, stop.clone()).await.unwrap();
    assert!(elsewhere.verify(&token).unwrap().is_admin());

    set_roles(&app, &first, &deputy, &["customer"]).await;
    eventually(Duration::from_secs(5), || async {
        Ok(matches!(elsewhere.verify(&token), Err(platform::auth::TokenError::Revoked(Revoked::RoleWithdrawn)))
            .then_some(()))
    })
    .await
    .expect("the other process never learned of the demotion");

    // A process started after the change reads it back on start, before serving anything.
    let started_later = JwtVerifier::new("bulkhead", "bulkhead-api");
    started_later.set_jwks(&serde_json::from_value(jwks).unwrap()).unwrap();
    RevocationFeed::new(pool, started_later.revocations().clone()).start(None, stop.clone()).await.unwrap();
    assert!(matches!(started_later.verify(&token), Err(platform::auth::TokenError::Revoked(Revoked::RoleWithdrawn))));
    stop.cancel();
    app.stop().await.unwrap();
}

on_every_topology!(
    a_demoted_admin_is_refused_on_every_modules_admin_routes,
    a_closed_account_and_a_signed_out_session_are_refused,
);
