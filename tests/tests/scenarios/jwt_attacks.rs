//! The JWT attack suite against the live app: tokens forged or bent the ways attackers try,
//! most of them signed with the users module's own signing key (read from the app's key
//! directory), so that only the check under attack can refuse them. Every one must be a 401
//! `invalid_token` in the envelope; the genuine token beside them must work.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bulkhead_tests::{TestApp, Topology};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::shop::customer;

/// The newest signing key of the app's users module, as PKCS#8 PEM.
fn issuer_key(app: &TestApp) -> EncodingKey {
    let dir: PathBuf = app.mailbox_dir().parent().unwrap().join("keys");
    let newest = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(".ed25519.pem"))
        .max()
        .unwrap_or_else(|| panic!("no signing key in {}", dir.display()));
    EncodingKey::from_ed_pem(&std::fs::read(newest).unwrap()).unwrap()
}

fn parts(token: &str) -> (Value, Value) {
    let mut pieces = token.split('.');
    let decode = |piece: Option<&str>| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(piece.unwrap()).unwrap()).unwrap()
    };
    (decode(pieces.next()), decode(pieces.next()))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `claims` signed by `key` under `header`.
fn sign(header: Value, claims: &Value, key: &EncodingKey) -> String {
    let header: Header = serde_json::from_value(header).unwrap();
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// Header and payload as given, with any signature bytes: what no library would make.
fn raw(header: &Value, claims: &Value, signature: &[u8]) -> String {
    let encode = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
    format!("{}.{}.{}", encode(header), encode(claims), URL_SAFE_NO_PAD.encode(signature))
}

async fn answer(app: &TestApp, path: &str, token: &str) -> (StatusCode, Value) {
    let response = app.get_as(path, token).await;
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn every_forged_or_bent_token_is_refused_with_401(topology: Topology) {
    let app = TestApp::spawn_on(topology, &[]).await;
    let genuine = customer(&app, "target@example.com").await;
    let (header, claims) = parts(&genuine);
    let kid = header["kid"].as_str().unwrap().to_owned();
    let key = issuer_key(&app);
    let jwks: Value = app.get("/.well-known/jwks.json").await.json().await.unwrap();
    let public_x = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid).unwrap()["x"].clone();
    let public_bytes = URL_SAFE_NO_PAD.decode(public_x.as_str().unwrap()).unwrap();
    let eddsa = json!({ "alg": "EdDSA", "typ": "JWT", "kid": kid });
    let with = |changes: Value| {
        let mut changed = claims.clone();
        for (field, value) in changes.as_object().unwrap() {
            changed[field] = value.clone();
        }
        changed
    };
    let admin_claims = with(json!({ "roles": ["customer", "admin"] }));
    let stranger = SigningKey::from_bytes(&rand::random());
    let stranger_key = EncodingKey::from_ed_der(stranger.to_pkcs8_der().unwrap().as_bytes());
    let stranger_jwk = json!({
        "kty": "OKP", "crv": "Ed25519", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(stranger.verifying_key().to_bytes())
    });

    // The control: the genuine token, and the issuer's key re-signing its claims unchanged.
    assert_eq!(answer(&app, "/api/v1/users/me", &genuine).await.0, StatusCode::OK);
    assert_eq!(answer(&app, "/api/v1/users/me", &sign(eddsa.clone(), &claims, &key)).await.0, StatusCode::OK);

    let attacks: Vec<(&str, String)> = vec![
        ("alg none", raw(&json!({ "alg": "none", "typ": "JWT", "kid": kid }), &admin_claims, b"")),
        ("alg None, signature kept", raw(&json!({ "alg": "None", "kid": kid }), &claims, b"x")),
        (
            "HS256 keyed with the public key (algorithm confusion)",
            sign(json!({ "alg": "HS256", "kid": kid }), &admin_claims, &EncodingKey::from_secret(&public_bytes)),
        ),
        (
            "HS256 keyed with the JWKS text",
            sign(
                json!({ "alg": "HS256", "kid": kid }),
                &admin_claims,
                &EncodingKey::from_secret(jwks.to_string().as_bytes()),
            ),
        ),
        ("expired", sign(eddsa.clone(), &with(json!({ "exp": now() - 60, "iat": now() - 960 })), &key)),
        ("not yet valid (nbf)", sign(eddsa.clone(), &with(json!({ "nbf": now() + 600 })), &key)),
        ("issued in the future (iat)", sign(eddsa.clone(), &with(json!({ "iat": now() + 600 })), &key)),
        ("tampered payload (roles)", {
            let signed = sign(eddsa.clone(), &claims, &key);
            let pieces: Vec<&str> = signed.split('.').collect();
            format!("{}.{}.{}", pieces[0], URL_SAFE_NO_PAD.encode(admin_claims.to_string()), pieces[2])
        }),
        ("tampered signature", {
            let mut signed = sign(eddsa.clone(), &claims, &key);
            let last = signed.pop().unwrap();
            signed.push(if last == 'A' { 'B' } else { 'A' });
            signed
        }),
        ("unknown kid", sign(json!({ "alg": "EdDSA", "kid": "not-a-key-we-know" }), &claims, &key)),
        ("no kid", sign(json!({ "alg": "EdDSA" }), &claims, &key)),
        ("a foreign key under our kid", sign(eddsa.clone(), &admin_claims, &stranger_key)),
        (
            "the attacker's key embedded as jwk",
            sign(json!({ "alg": "EdDSA", "kid": kid, "jwk": stranger_jwk }), &admin_claims, &stranger_key),
        ),
        (
            "a key URL (jku)",
            sign(json!({ "alg": "EdDSA", "kid": kid, "jku": "http://127.0.0.1:9/jwks.json" }), &claims, &key),
        ),
        ("wrong audience", sign(eddsa.clone(), &with(json!({ "aud": "bulkhead-internal" })), &key)),
        ("wrong issuer", sign(eddsa.clone(), &with(json!({ "iss": "someone-else" })), &key)),
        ("no expiry", {
            let mut without = claims.clone();
            without.as_object_mut().unwrap().remove("exp");
            sign(eddsa.clone(), &without, &key)
        }),
        ("not a JWT", "definitely.not.a-token".to_owned()),
    ];
    for (attack, token) in &attacks {
        for path in ["/api/v1/users/me", "/api/v1/users", "/api/v1/admin/bus/subscriptions"] {
            let (status, body) = answer(&app, path, token).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{attack} on {path}: {body}");
            assert_eq!(body["error"]["code"], "invalid_token", "{attack} on {path}: {body}");
        }
    }
    app.stop().await.unwrap();
}

async fn a_reused_refresh_token_ends_its_session_and_the_sessions_access_token(topology: Topology) {
    let app = TestApp::spawn_on(topology, &[]).await;
    customer(&app, "reuse@example.com").await;
    let login = json!({ "email": "reuse@example.com", "password": "a perfectly fine passphrase" });
    let tokens: Value = app.post("/api/v1/auth/login", None, &login).await.json().await.unwrap();
    let first_refresh = tokens["data"]["refresh_token"].as_str().unwrap().to_owned();
    let app = &app;
    let refresh = |token: &str| {
        let body = json!({ "refresh_token": token });
        async move { app.post("/api/v1/auth/refresh", None, &body).await }
    };

    let rotated: Value = refresh(&first_refresh).await.json().await.unwrap();
    let access = rotated["data"]["access_token"].as_str().unwrap().to_owned();
    let second_refresh = rotated["data"]["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(answer(app, "/api/v1/users/me", &access).await.0, StatusCode::OK);

    // The first refresh token was stolen and is played again: the whole session ends.
    let reused = refresh(&first_refresh).await;
    assert_eq!(reused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(reused.json::<Value>().await.unwrap()["error"]["code"], "refresh_token_reused");
    assert_eq!(refresh(&second_refresh).await.status(), StatusCode::UNAUTHORIZED, "the family is revoked");
    let (status, body) = answer(app, "/api/v1/users/me", &access).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the session's access token is refused at once: {body}");
}

on_every_topology!(
    every_forged_or_bent_token_is_refused_with_401,
    a_reused_refresh_token_ends_its_session_and_the_sessions_access_token,
);
