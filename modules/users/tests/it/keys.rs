//! Signing keys, the JWKS, rotation, attacks on tokens, and the first admin.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::support::{ADMIN_EMAIL, ADMIN_PASSWORD, Harness, code, read};

async fn jwks(app: &Harness) -> Value {
    let response = app.client.get(app.url("/.well-known/jwks.json")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

#[tokio::test]
async fn the_jwks_publishes_the_key_tokens_name() {
    let app = Harness::start().await;
    let admin = app.admin().await;
    let keys = jwks(&app).await;
    let key = &keys["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str(), key["alg"].as_str()),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
    );
    assert_eq!(key["kid"].as_str(), Some(kid_of(&admin.access).as_str()));
    assert!(key.get("d").is_none(), "no private part");
    // Another process can verify with the JWKS alone.
    let remote = platform::auth::JwtVerifier::new("bulkhead", "bulkhead-api");
    remote.set_jwks(&serde_json::from_value(keys).unwrap()).unwrap();
    assert!(remote.verify(&admin.access).is_ok());
}

#[tokio::test]
async fn the_key_is_generated_once_and_kept_across_restarts() {
    let app = Harness::start().await;
    let before = app.admin().await;
    let files = std::fs::read_dir(app.keys_dir.path()).unwrap().count();
    assert_eq!(files, 1);
    let app = app.restart().await;
    assert_eq!(std::fs::read_dir(app.keys_dir.path()).unwrap().count(), 1);
    assert_eq!(app.get_as("/api/v1/users/me", &before.access).await.status(), StatusCode::OK, "old tokens verify");
}

#[tokio::test]
async fn after_rotation_old_and_new_keys_both_verify_until_the_old_is_retired() {
    let app = Harness::start().await;
    let old = app.admin().await;
    let (status, body) = read(app.call(Method::POST, "/api/v1/auth/keys", Some(&old.access), None).await).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let new_kid = body["data"]["kid"].as_str().unwrap().to_owned();
    let new = app.admin().await;
    assert_eq!(kid_of(&new.access), new_kid);
    assert_ne!(kid_of(&old.access), new_kid);
    assert_eq!(jwks(&app).await["keys"].as_array().unwrap().len(), 2);
    for token in [&old.access, &new.access] {
        assert_eq!(app.get_as("/api/v1/users/me", token).await.status(), StatusCode::OK);
    }

    let (status, body) =
        read(app.call(Method::DELETE, &format!("/api/v1/auth/keys/{new_kid}"), Some(&new.access), None).await).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "active_key"));
    let old_kid = kid_of(&old.access);
    let (status, _) =
        read(app.call(Method::DELETE, &format!("/api/v1/auth/keys/{old_kid}"), Some(&new.access), None).await).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.get_as("/api/v1/users/me", &old.access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.get_as("/api/v1/users/me", &new.access).await.status(), StatusCode::OK);
    assert_eq!(jwks(&app).await["keys"].as_array().unwrap().len(), 1);
}

/// Re-encodes a token's payload with `change` applied, keeping header and signature.
fn tamper(token: &str, change: impl FnOnce(&mut Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    change(&mut claims);
    format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()), parts[2])
}

fn claims_of(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

#[tokio::test]
async fn forged_and_altered_tokens_are_refused() {
    let app = Harness::start().await;
    let (_, session) = app.customer("victim@example.com").await;
    let claims = claims_of(&session.access);
    let kid = kid_of(&session.access);
    let public_x = URL_SAFE_NO_PAD.decode(jwks(&app).await["keys"][0]["x"].as_str().unwrap()).unwrap();
    let header = |alg: &str| URL_SAFE_NO_PAD.encode(json!({"alg": alg, "typ": "JWT", "kid": kid}).to_string());
    let body = |claims: &Value| URL_SAFE_NO_PAD.encode(claims.to_string());

    let alg_none = format!("{}.{}.", header("none"), body(&claims));
    let hs256_with_public_key = {
        let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        hs.kid = Some(kid.clone());
        jsonwebtoken::encode(&hs, &claims, &jsonwebtoken::EncodingKey::from_secret(&public_x)).unwrap()
    };
    let promoted = tamper(&session.access, |c| c["roles"] = json!(["admin"]));
    let expired = tamper(&session.access, |c| c["exp"] = json!(1_000_000_000));
    let wrong_audience = tamper(&session.access, |c| c["aud"] = json!("another-api"));
    let wrong_issuer = tamper(&session.access, |c| c["iss"] = json!("evil"));
    let unknown_kid = {
        let parts: Vec<&str> = session.access.split('.').collect();
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": "EdDSA", "typ": "JWT", "kid": "unknown"}).to_string());
        format!("{header}.{}.{}", parts[1], parts[2])
    };
    let signed_by_stranger = {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let stranger = ed25519_dalek::SigningKey::from_bytes(&rand::random());
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        h.kid = Some(kid.clone());
        let der = stranger.to_pkcs8_der().unwrap();
        jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes())).unwrap()
    };
    let attacks = [
        ("alg none", alg_none),
        ("HS256 signed with the public key", hs256_with_public_key),
        ("tampered roles", promoted),
        ("expired", expired),
        ("wrong aud", wrong_audience),
        ("wrong iss", wrong_issuer),
        ("unknown kid", unknown_kid),
        ("signed by another key", signed_by_stranger),
    ];
    for (attack, token) in attacks {
        let (status, body) = read(app.get_as("/api/v1/users/me", &token).await).await;
        assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_token"), "{attack}");
        let (status, _) = read(app.get_as("/api/v1/users", &token).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{attack} on an admin route");
    }
    assert_eq!(app.get_as("/api/v1/users/me", &session.access).await.status(), StatusCode::OK, "the real token works");
}

#[tokio::test]
async fn the_first_admin_is_created_once() {
    let app = Harness::start().await;
    let admin = app.admin().await;
    let (_, me) = read(app.get_as("/api/v1/users/me", &admin.access).await).await;
    assert_eq!(me["data"]["email"], ADMIN_EMAIL);
    assert_eq!(me["data"]["email_verified"], true);
    assert!(me["data"]["roles"].as_array().unwrap().contains(&json!("admin")));
    // A second start finds the admin and changes nothing.
    let app = app.restart().await;
    assert!(app.module.ensure_first_admin().await.unwrap().is_none());
    app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
}

#[tokio::test]
async fn without_a_configured_password_the_first_admin_gets_a_random_one_shown_once() {
    let app = Harness::start_with(|config| {
        config.first_admin.email = "ops@example.com".to_owned();
        config.first_admin.password = None;
    })
    .await;
    let created = app.first_admin.as_ref().unwrap();
    assert_eq!(created.email, "ops@example.com");
    let password = created.generated_password.as_ref().unwrap().expose_secret().to_owned();
    assert_eq!(password.len(), 24);
    app.login("ops@example.com", &password).await;
    let app = app.restart().await;
    assert!(app.first_admin.is_none(), "nothing to show on later starts");
}

#[tokio::test]
async fn replicas_starting_together_create_one_first_admin() {
    let database = platform::testing::TestDatabase::create(&[users::DESCRIPTOR.schema]).await.unwrap();
    let pool = database.connect(&[users::DESCRIPTOR.schema]).await.unwrap().pool("users").unwrap().clone();
    let keys = tempfile::tempdir().unwrap();
    let replica = |email: &str| {
        let mut config = users::UsersConfig::new(keys.path().to_owned(), "https://shop.example.com");
        config.first_admin.email = email.to_owned();
        let verifier = platform::auth::JwtVerifier::new("bulkhead", "bulkhead-api");
        users::UsersModule::new(pool.clone(), verifier, config).unwrap()
    };
    let (a, b) = (replica("first@example.com"), replica("second@example.com"));
    let (a, b) = tokio::join!(a.ensure_first_admin(), b.ensure_first_admin());
    let created: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(created.len(), 1, "{created:?}");
    let admins: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE 'admin' = ANY (roles)").fetch_one(&pool).await.unwrap();
    assert_eq!(admins, 1);
}
