//! Signing in, token refresh with rotation and reuse detection, signing out, expiry and
//! throttling.

use chrono::TimeDelta;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Harness, PASSWORD, code, read};

fn without_request_id(mut body: Value) -> Value {
    body["error"]["request_id"] = Value::Null;
    body
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_fail_identically() {
    let app = Harness::start().await;
    app.register("known@example.com").await;
    let wrong_password =
        app.post("/api/v1/auth/login", json!({"email": "known@example.com", "password": "wrong password here"})).await;
    let unknown_email =
        app.post("/api/v1/auth/login", json!({"email": "unknown@example.com", "password": PASSWORD})).await;
    let (a_status, a) = read(wrong_password).await;
    let (b_status, b) = read(unknown_email).await;
    assert_eq!((a_status, b_status), (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED));
    assert_eq!(code(&a), "invalid_credentials");
    assert_eq!(without_request_id(a), without_request_id(b));
}

#[tokio::test]
async fn sign_in_gives_a_short_lived_token_for_the_account() {
    let app = Harness::start().await;
    let (id, session) = app.customer("short@example.com").await;
    let principal = app.verifier.verify(&session.access).unwrap();
    assert_eq!(principal.subject, id);
    assert!(principal.session.is_some());
    let header = jsonwebtoken::decode_header(&session.access).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    assert!(header.kid.is_some());
    let (status, body) =
        read(app.post("/api/v1/auth/login", json!({"email": "short@example.com", "password": PASSWORD})).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["expires_in"], 900);
    assert_eq!(body["data"]["token_type"], "Bearer");
}

#[tokio::test]
async fn access_tokens_expire_after_fifteen_minutes() {
    let app = Harness::start().await;
    app.register("expiring@example.com").await;
    // Issued 16 minutes ago by the module's clock: already past its expiry now.
    app.advance(TimeDelta::minutes(-16));
    let session = app.login("expiring@example.com", PASSWORD).await;
    app.clock.reset();
    let (status, body) = read(app.get_as("/api/v1/users/me", &session.access).await).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_token"), "{body}");
    // The session itself lives on: the refresh token gets a fresh access token.
    let (status, body) = read(app.post("/api/v1/auth/refresh", json!({"refresh_token": session.refresh})).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let fresh = body["data"]["access_token"].as_str().unwrap();
    assert_eq!(app.get_as("/api/v1/users/me", fresh).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_token_revokes_the_whole_family() {
    let app = Harness::start().await;
    let (_, session) = app.customer("rotate@example.com").await;
    let refresh = |token: &str| app.post("/api/v1/auth/refresh", json!({"refresh_token": token}));

    let (status, body) = read(refresh(&session.refresh).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = body["data"]["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second, session.refresh);

    // The first token again: someone holds a copy. Its whole session ends…
    let (status, body) = read(refresh(&session.refresh).await).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "refresh_token_reused"));
    // …including the token the legitimate client holds now.
    let (status, body) = read(refresh(&second).await).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_refresh_token"));

    // Other sessions of the same user are not affected.
    let other = app.login("rotate@example.com", PASSWORD).await;
    assert_eq!(refresh(&other.refresh).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn refresh_tokens_are_stored_hashed() {
    let app = Harness::start().await;
    let (_, session) = app.customer("hashed@example.com").await;
    let mut db = app.database.admin_connection().await.unwrap();
    let stored: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT token_hash FROM users.refresh_tokens").fetch_all(&mut db).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].len(), 32, "a SHA-256");
    assert!(!String::from_utf8_lossy(&stored[0]).contains(&session.refresh[3..]));
}

#[tokio::test]
async fn logout_ends_the_session() {
    let app = Harness::start().await;
    let (_, session) = app.customer("bye@example.com").await;
    let (status, _) = read(app.post("/api/v1/auth/logout", json!({"refresh_token": session.refresh})).await).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = read(app.post("/api/v1/auth/refresh", json!({"refresh_token": session.refresh})).await).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_refresh_token"));
    let (status, _) = read(app.post("/api/v1/auth/logout", json!({"refresh_token": "rt_unknown"})).await).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "unknown tokens are fine to revoke");
}

#[tokio::test]
async fn refresh_tokens_expire() {
    let app = Harness::start().await;
    app.register("stale@example.com").await;
    let session = app.login("stale@example.com", PASSWORD).await;
    app.advance(TimeDelta::days(15));
    let (status, body) = read(app.post("/api/v1/auth/refresh", json!({"refresh_token": session.refresh})).await).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_refresh_token"));
}

#[tokio::test]
async fn failed_sign_ins_back_off_per_account_without_revealing_whether_it_exists() {
    let app = Harness::start().await;
    app.register("target@example.com").await;
    for email in ["target@example.com", "ghost@example.com"] {
        for attempt in 1..=5 {
            let (status, body) =
                read(app.post("/api/v1/auth/login", json!({"email": email, "password": "wrong password here"})).await)
                    .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{email} attempt {attempt}: {body}");
        }
        // Blocked now — even with the right password, and the same for an unknown address.
        let response = app.post("/api/v1/auth/login", json!({"email": email, "password": PASSWORD})).await;
        let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        let (status, body) = read(response).await;
        assert_eq!((status, code(&body)), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"), "{email}");
        assert!((1..=31).contains(&retry_after), "{retry_after}");
    }
    // The block ends; the right password works and clears the count.
    app.advance(TimeDelta::seconds(31));
    app.login("target@example.com", PASSWORD).await;
    let (status, _) = read(
        app.post("/api/v1/auth/login", json!({"email": "target@example.com", "password": "wrong password here"})).await,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "counting starts again after a success");
}

#[tokio::test]
async fn one_client_trying_many_accounts_is_slowed_down() {
    let app = Harness::start_with(|config| config.throttle.client.free = 6).await;
    for n in 0..6 {
        let (status, _) = read(
            app.post(
                "/api/v1/auth/login",
                json!({"email": format!("spray{n}@example.com"), "password": "password spraying"}),
            )
            .await,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    app.register("innocent@example.com").await;
    let (status, _) =
        read(app.post("/api/v1/auth/login", json!({"email": "innocent@example.com", "password": PASSWORD})).await)
            .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "this address is backing off");
}

#[tokio::test]
async fn deactivated_users_can_neither_sign_in_nor_refresh() {
    let app = Harness::start().await;
    let (id, session) = app.customer("closed@example.com").await;
    let admin = app.admin().await;
    let (status, body) = read(
        app.call(reqwest::Method::POST, &format!("/api/v1/users/{id}/deactivate"), Some(&admin.access), None).await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["status"], "deactivated");
    let (status, body) = read(app.post("/api/v1/auth/refresh", json!({"refresh_token": session.refresh})).await).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_refresh_token"));
    let (status, body) =
        read(app.post("/api/v1/auth/login", json!({"email": "closed@example.com", "password": PASSWORD})).await).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "account_deactivated"));
    let (status, body) = read(
        app.post("/api/v1/auth/login", json!({"email": "closed@example.com", "password": "wrong password here"})).await,
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_credentials"),
        "no status without the password"
    );
}

#[tokio::test]
async fn a_burst_of_parallel_guesses_gets_no_more_tries_than_one_at_a_time() {
    let app = Harness::start().await;
    app.register("burst@example.com").await;
    let guesses = (0..12).map(|n| {
        app.post(
            "/api/v1/auth/login",
            json!({"email": "burst@example.com", "password": format!("guess number {n:02}")}),
        )
    });
    let statuses: Vec<StatusCode> =
        futures::future::join_all(guesses).await.iter().map(reqwest::Response::status).collect();
    let checked = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!(checked + refused, 12, "{statuses:?}");
    assert!(checked <= 5, "only the free attempts were checked: {statuses:?}");
}

#[tokio::test]
async fn a_refresh_token_raced_against_itself_is_exchanged_once_and_ends_the_session() {
    let app = Harness::start().await;
    let (_, session) = app.customer("race@example.com").await;
    let refresh = || app.post("/api/v1/auth/refresh", json!({"refresh_token": session.refresh}));
    let (a, b) = tokio::join!(refresh(), refresh());
    let (mut outcomes, mut winner) = (Vec::new(), None);
    for (status, body) in [read(a).await, read(b).await] {
        if status == StatusCode::OK {
            winner = Some(body["data"]["refresh_token"].as_str().unwrap().to_owned());
        }
        outcomes.push((status, code(&body).to_owned()));
    }
    outcomes.sort();
    assert_eq!(
        outcomes,
        vec![(StatusCode::OK, String::new()), (StatusCode::UNAUTHORIZED, "refresh_token_reused".to_owned())]
    );
    let (status, _) = read(app.post("/api/v1/auth/refresh", json!({"refresh_token": winner.unwrap()})).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the second use ended the session");
}

#[tokio::test]
async fn many_people_signing_in_at_once_from_one_address_are_not_throttled() {
    let app = Harness::start_with(|config| config.throttle.client.free = 5).await;
    let emails: Vec<String> = (0..12).map(|n| format!("office{n}@example.com")).collect();
    for email in &emails {
        app.register(email).await;
    }
    let sign_ins =
        emails.iter().map(|email| app.post("/api/v1/auth/login", json!({"email": email, "password": PASSWORD})));
    let statuses: Vec<StatusCode> =
        futures::future::join_all(sign_ins).await.iter().map(reqwest::Response::status).collect();
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "right passwords never count against the address: {statuses:?}"
    );
}
