//! The users module inside the real application: a customer registers, signs in and uses the
//! token; the first admin administers; other processes verify tokens from the JWKS alone.

use bulkhead_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, Topology};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn a_customer_registers_signs_in_and_reads_their_account(topology: Topology) {
    let app = TestApp::spawn_on(topology, &[]).await;
    let registration =
        json!({"email": "Lin@Example.com", "password": "a perfectly fine passphrase", "display_name": "Lin"});
    let response = app.post("/api/v1/users", None, &registration).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();

    let token = app.sign_in("lin@example.com", "a perfectly fine passphrase").await;
    let me: Value = app.get_as("/api/v1/users/me", &token).await.json().await.unwrap();
    assert_eq!(me["data"]["id"], created["data"]["id"]);
    assert_eq!(me["data"]["email"], "lin@example.com");

    // The customer cannot read accounts by id; the admin can, at the `Location` given.
    assert_eq!(app.get_as(&location, &token).await.status(), StatusCode::FORBIDDEN);
    let admin = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let seen: Value = app.get_as(&location, &admin).await.json().await.unwrap();
    assert_eq!(seen["data"]["email"], "lin@example.com");

    // A process that does not host users verifies the same token from the JWKS.
    let jwks: Value = app.get("/.well-known/jwks.json").await.json().await.unwrap();
    let elsewhere = platform::auth::JwtVerifier::new("bulkhead", "bulkhead-api");
    elsewhere.set_jwks(&serde_json::from_value(jwks).unwrap()).unwrap();
    assert_eq!(elsewhere.verify(&token).unwrap().subject, created["data"]["id"].as_str().unwrap());
    app.stop().await.unwrap();
}

async fn tokens_the_users_module_signs_open_the_bus_admin_api(topology: Topology) {
    let app = TestApp::spawn_on(topology, &[]).await;
    let admin = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(app.get_as("/api/v1/admin/bus/subscriptions", &admin).await.status(), StatusCode::OK);
    let registration =
        json!({"email": "cust@example.com", "password": "a perfectly fine passphrase", "display_name": "C"});
    assert_eq!(app.post("/api/v1/users", None, &registration).await.status(), StatusCode::CREATED);
    let customer = app.sign_in("cust@example.com", "a perfectly fine passphrase").await;
    assert_eq!(app.get_as("/api/v1/admin/bus/subscriptions", &customer).await.status(), StatusCode::FORBIDDEN);
    app.stop().await.unwrap();
}

on_every_topology!(
    a_customer_registers_signs_in_and_reads_their_account,
    tokens_the_users_module_signs_open_the_bus_admin_api,
);
