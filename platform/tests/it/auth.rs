//! Token verification: what is accepted, every attack that must be refused, key rotation, and
//! the extractors' 401/403 answers.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::FromRef;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use platform::auth::{AdminOnly, Authenticated, Claims, JwtVerifier, Role, TokenError};
use platform::http::{Data, HttpSettings};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::Served;

pub const ISSUER: &str = "bulkhead";
pub const AUDIENCE: &str = "bulkhead-api";

/// A signing key as the users module will hold one.
pub use platform::testing::TestSigner as TestKey;

fn now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

pub fn claims(subject: &str, roles: &[Role]) -> Claims {
    Claims {
        sub: subject.to_owned(),
        roles: roles.to_vec(),
        iss: ISSUER.to_owned(),
        aud: AUDIENCE.to_owned(),
        exp: now() + 900,
        iat: now(),
        nbf: None,
        jti: Some(uuid::Uuid::new_v4().to_string()),
        sid: None,
    }
}

pub fn verifier_trusting(key: &TestKey) -> JwtVerifier {
    let verifier = JwtVerifier::new(ISSUER, AUDIENCE);
    key.trust(&verifier);
    verifier
}

#[test]
fn a_well_signed_token_verifies_to_its_subject_and_roles() {
    let key = TestKey::generate("k1");
    let principal = verifier_trusting(&key).verify(&key.sign(&claims("user-1", &[Role::Admin]))).unwrap();
    assert_eq!(principal.subject, "user-1");
    assert!(principal.is_admin());
}

#[test]
fn alg_none_is_refused() {
    let key = TestKey::generate("k1");
    let header = URL_SAFE_NO_PAD.encode(json!({ "alg": "none", "typ": "JWT", "kid": "k1" }).to_string());
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_string(&claims("user-1", &[Role::Admin])).unwrap());
    let error = verifier_trusting(&key).verify(&format!("{header}.{payload}.")).unwrap_err();
    assert!(matches!(error, TokenError::Invalid(_) | TokenError::WrongAlgorithm(_)), "{error}");
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    let key = TestKey::generate("k1");
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".to_owned());
    let forged = jsonwebtoken::encode(
        &header,
        &claims("user-1", &[Role::Admin]),
        &EncodingKey::from_secret(&key.public_bytes()),
    )
    .unwrap();
    let error = verifier_trusting(&key).verify(&forged).unwrap_err();
    assert!(matches!(error, TokenError::WrongAlgorithm(Algorithm::HS256)), "{error}");
}

#[test]
fn expired_tokens_are_refused() {
    let key = TestKey::generate("k1");
    let mut expired = claims("user-1", &[Role::Customer]);
    expired.exp = now() - 60;
    let error = verifier_trusting(&key).verify(&key.sign(&expired)).unwrap_err();
    assert!(error.to_string().contains("Expired"), "{error}");
}

#[test]
fn tokens_not_yet_valid_or_issued_in_the_future_are_refused() {
    let key = TestKey::generate("k1");
    let verifier = verifier_trusting(&key);
    let mut not_yet = claims("user-1", &[Role::Customer]);
    not_yet.nbf = Some(now() + 600);
    let error = verifier.verify(&key.sign(&not_yet)).unwrap_err();
    assert!(error.to_string().contains("ImmatureSignature"), "{error}");

    let mut from_the_future = claims("user-1", &[Role::Customer]);
    from_the_future.iat = now() + 600;
    assert!(matches!(verifier.verify(&key.sign(&from_the_future)).unwrap_err(), TokenError::IssuedInTheFuture(_)));

    let mut just_valid = claims("user-1", &[Role::Customer]);
    just_valid.nbf = Some(now() + 2);
    verifier.verify(&key.sign(&just_valid)).expect("within the clock-skew leeway");
}

#[test]
fn key_material_in_the_header_is_refused_even_when_the_kid_is_trusted() {
    let trusted = TestKey::generate("k1");
    let attacker = TestKey::generate("k1");
    let verifier = verifier_trusting(&trusted);
    let der = SigningKey::from_bytes(&rand::random()).to_pkcs8_der().unwrap();
    for header in [
        json!({ "alg": "EdDSA", "kid": "k1", "jwk": attacker.jwk() }),
        json!({ "alg": "EdDSA", "kid": "k1", "jku": "https://attacker.example/jwks.json" }),
        json!({ "alg": "EdDSA", "kid": "k1", "x5u": "https://attacker.example/cert.pem" }),
    ] {
        let header: Header = serde_json::from_value(header).unwrap();
        let token =
            jsonwebtoken::encode(&header, &claims("u", &[Role::Admin]), &EncodingKey::from_ed_der(der.as_bytes()))
                .unwrap();
        assert!(matches!(verifier.verify(&token).unwrap_err(), TokenError::KeyInHeader), "{header:?}");
    }
}

#[test]
fn a_wrong_audience_or_issuer_is_refused() {
    let key = TestKey::generate("k1");
    let verifier = verifier_trusting(&key);
    let mut wrong_audience = claims("user-1", &[Role::Customer]);
    wrong_audience.aud = "bulkhead-internal-payments".to_owned();
    assert!(verifier.verify(&key.sign(&wrong_audience)).unwrap_err().to_string().contains("Audience"));
    let mut wrong_issuer = claims("user-1", &[Role::Customer]);
    wrong_issuer.iss = "someone-else".to_owned();
    assert!(verifier.verify(&key.sign(&wrong_issuer)).unwrap_err().to_string().contains("Issuer"));
}

#[test]
fn a_tampered_payload_is_refused() {
    let key = TestKey::generate("k1");
    let token = key.sign(&claims("user-1", &[Role::Customer]));
    let parts: Vec<&str> = token.split('.').collect();
    let promoted = URL_SAFE_NO_PAD.encode(serde_json::to_string(&claims("user-1", &[Role::Admin])).unwrap());
    let tampered = format!("{}.{promoted}.{}", parts[0], parts[2]);
    let error = verifier_trusting(&key).verify(&tampered).unwrap_err();
    assert!(error.to_string().contains("InvalidSignature"), "{error}");
}

#[test]
fn unknown_or_missing_key_ids_are_refused() {
    let trusted = TestKey::generate("k1");
    let stranger = TestKey::generate("k2");
    let verifier = verifier_trusting(&trusted);
    assert!(
        matches!(verifier.verify(&stranger.sign(&claims("u", &[]))).unwrap_err(), TokenError::UnknownKey(kid) if kid == "k2")
    );

    let header = Header::new(Algorithm::EdDSA);
    let der = SigningKey::from_bytes(&rand::random()).to_pkcs8_der().unwrap();
    let without_kid =
        jsonwebtoken::encode(&header, &claims("u", &[]), &EncodingKey::from_ed_der(der.as_bytes())).unwrap();
    assert!(matches!(verifier.verify(&without_kid).unwrap_err(), TokenError::MissingKeyId));
}

#[test]
fn during_rotation_both_keys_verify_and_a_retired_key_stops_verifying() {
    let old = TestKey::generate("2026-10");
    let new = TestKey::generate("2026-11");
    let verifier = JwtVerifier::new(ISSUER, AUDIENCE);
    let both: JwkSet = serde_json::from_value(json!({ "keys": [old.jwk(), new.jwk()] })).unwrap();
    verifier.set_jwks(&both).unwrap();
    verifier.verify(&old.sign(&claims("u", &[]))).unwrap();
    verifier.verify(&new.sign(&claims("u", &[]))).unwrap();

    let only_new: JwkSet = serde_json::from_value(json!({ "keys": [new.jwk()] })).unwrap();
    verifier.set_jwks(&only_new).unwrap();
    assert!(verifier.verify(&old.sign(&claims("u", &[]))).is_err());
    verifier.verify(&new.sign(&claims("u", &[]))).unwrap();
}

#[derive(Clone)]
struct AppState {
    verifier: JwtVerifier,
}

impl FromRef<AppState> for JwtVerifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

#[tokio::test]
async fn the_extractors_answer_401_to_strangers_and_403_to_customers_on_admin_routes() {
    let key = TestKey::generate("k1");
    let router = Router::new()
        .route("/me", get(|Authenticated(p): Authenticated| async move { Data(json!({ "subject": p.subject })) }))
        .route("/admin", get(|AdminOnly(p): AdminOnly| async move { Data(json!({ "subject": p.subject })) }))
        .with_state(AppState { verifier: verifier_trusting(&key) });
    let app = Served::start(router, HttpSettings::default()).await;
    let customer = key.sign(&claims("customer-1", &[Role::Customer]));
    let admin = key.sign(&claims("admin-1", &[Role::Admin]));

    let anonymous = app.client.get(app.url("/admin")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    assert_eq!(anonymous.json::<Value>().await.unwrap()["error"]["code"], "unauthenticated");

    let garbage = app.client.get(app.url("/me")).bearer_auth("not.a.token").send().await.unwrap();
    assert_eq!(garbage.status(), StatusCode::UNAUTHORIZED);
    assert!(garbage.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    assert_eq!(garbage.json::<Value>().await.unwrap()["error"]["code"], "invalid_token");

    let forbidden = app.client.get(app.url("/admin")).bearer_auth(&customer).send().await.unwrap();
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    assert_eq!(forbidden.json::<Value>().await.unwrap()["error"]["code"], "forbidden");

    let me = app.client.get(app.url("/me")).bearer_auth(&customer).send().await.unwrap();
    assert_eq!(me.json::<Value>().await.unwrap()["data"]["subject"], "customer-1");
    let allowed = app.client.get(app.url("/admin")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
}
