//! Email verification and password reset: links minted through the port (as notifications
//! will), used once, expiring, and the sessions a reset or a password change ends.

use chrono::TimeDelta;
use platform::port::CallContext;
use reqwest::{Method, StatusCode};
use serde_json::json;
use users_contract::{ActionPurpose, ActionRequestId, UsersError};

use crate::support::{Harness, PASSWORD, code, read};

const NEW_PASSWORD: &str = "an entirely new passphrase";

#[tokio::test]
async fn the_registration_link_verifies_the_email_once() {
    let app = Harness::start().await;
    let (id, session) = app.customer("verify@example.com").await;
    let registered = app.events("users.user_registered").await;
    let link = app.link(&registered[0]["verification_request"]).await;
    assert_eq!(link.purpose, ActionPurpose::VerifyEmail);
    assert_eq!(link.url, format!("https://shop.example.com/verify-email?token={}", link.token));
    assert!(!format!("{link:?}").contains(&link.token), "Debug leaves the secret out");
    assert!(!registered[0].to_string().contains(&link.token), "the event carries no secret");

    let (status, body) = read(app.post("/api/v1/auth/email-verification", json!({"token": link.token})).await).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (_, me) = read(app.get_as("/api/v1/users/me", &session.access).await).await;
    assert_eq!(me["data"]["email_verified"], true);
    let verified = app.events("users.email_verified").await;
    assert_eq!(verified.len(), 1);
    assert_eq!(verified[0]["user_id"].as_str(), Some(id.as_str()));

    let (status, body) = read(app.post("/api/v1/auth/email-verification", json!({"token": link.token})).await).await;
    assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_link"), "single use");
    let (status, body) =
        read(app.call(Method::POST, "/api/v1/users/me/email-verification", Some(&session.access), None).await).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "already_verified"));
}

#[tokio::test]
async fn verification_links_expire_a_day_after_they_are_sent() {
    let app = Harness::start().await;
    app.register("late@example.com").await;
    let registered = app.events("users.user_registered").await;
    let link = app.link(&registered[0]["verification_request"]).await;
    app.advance(TimeDelta::hours(24) + TimeDelta::seconds(1));
    let (status, body) = read(app.post("/api/v1/auth/email-verification", json!({"token": link.token})).await).await;
    assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_link"));
}

#[tokio::test]
async fn asking_again_replaces_the_earlier_link() {
    let app = Harness::start().await;
    let (_, session) = app.customer("again@example.com").await;
    let first = app.link(&app.events("users.user_registered").await[0]["verification_request"]).await;
    let (status, _) =
        read(app.call(Method::POST, "/api/v1/users/me/email-verification", Some(&session.access), None).await).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let requested = app.events("users.email_verification_requested").await;
    assert_eq!(requested.len(), 1);

    let (status, _) = read(app.post("/api/v1/auth/email-verification", json!({"token": first.token})).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "superseded");
    let stale = ActionRequestId(first.request_id.0);
    let error = app.api.action_link(&CallContext::system("test"), stale).await.unwrap_err();
    assert!(matches!(error, UsersError::LinkUnavailable(_)), "{error:?}");

    // Minting the same request twice: only the newest link works.
    let second = app.link(&requested[0]["request_id"]).await;
    let third = app.link(&requested[0]["request_id"]).await;
    let (status, _) = read(app.post("/api/v1/auth/email-verification", json!({"token": second.token})).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = read(app.post("/api/v1/auth/email-verification", json!({"token": third.token})).await).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_reset_request_answers_the_same_for_unknown_addresses() {
    let app = Harness::start().await;
    app.register("exists@example.com").await;
    let (known_status, known) =
        read(app.post("/api/v1/auth/password-reset", json!({"email": "Exists@example.com"})).await).await;
    let (unknown_status, unknown) =
        read(app.post("/api/v1/auth/password-reset", json!({"email": "nobody@example.com"})).await).await;
    let (garbage_status, _) =
        read(app.post("/api/v1/auth/password-reset", json!({"email": "not an email"})).await).await;
    assert_eq!(
        (known_status, unknown_status, garbage_status),
        (StatusCode::ACCEPTED, StatusCode::ACCEPTED, StatusCode::ACCEPTED)
    );
    assert_eq!(known, unknown);
    let requested = app.await_events("users.password_reset_requested", 1).await;
    assert_eq!(requested.len(), 1, "only the real account gets a request");
}

#[tokio::test]
async fn a_password_reset_works_once_and_ends_every_session() {
    let app = Harness::start().await;
    let (_, phone) = app.customer("reset@example.com").await;
    let laptop = app.login("reset@example.com", PASSWORD).await;
    app.post("/api/v1/auth/password-reset", json!({"email": "reset@example.com"})).await;
    let link = app.link(&app.await_events("users.password_reset_requested", 1).await[0]["request_id"]).await;
    assert_eq!(link.purpose, ActionPurpose::ResetPassword);
    assert!(link.url.starts_with("https://shop.example.com/reset-password?token="));

    let confirm = |password: &str| {
        app.post("/api/v1/auth/password-reset/confirm", json!({"token": link.token, "new_password": password}))
    };
    let (status, body) = read(confirm("password1234").await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a common password: {body}");
    let (status, body) = read(confirm(NEW_PASSWORD).await).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "the link survived the rejected attempt: {body}");
    let (status, body) = read(confirm("yet another passphrase").await).await;
    assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_link"), "single use");

    for session in [&phone, &laptop] {
        let (status, _) = read(app.post("/api/v1/auth/refresh", json!({"refresh_token": session.refresh})).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "every session ended");
    }
    let (status, _) =
        read(app.post("/api/v1/auth/login", json!({"email": "reset@example.com", "password": PASSWORD})).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.login("reset@example.com", NEW_PASSWORD).await;
}

#[tokio::test]
async fn reset_links_expire_after_thirty_minutes() {
    let app = Harness::start().await;
    app.register("slow@example.com").await;
    app.post("/api/v1/auth/password-reset", json!({"email": "slow@example.com"})).await;
    let link = app.link(&app.await_events("users.password_reset_requested", 1).await[0]["request_id"]).await;
    app.advance(TimeDelta::minutes(31));
    let (status, body) = read(
        app.post("/api/v1/auth/password-reset/confirm", json!({"token": link.token, "new_password": NEW_PASSWORD}))
            .await,
    )
    .await;
    assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_link"));
    app.login("slow@example.com", PASSWORD).await;
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_ends_the_other_sessions() {
    let app = Harness::start().await;
    let (_, here) = app.customer("change@example.com").await;
    let elsewhere = app.login("change@example.com", PASSWORD).await;
    let change = |current: &str, new: &str| {
        app.call(
            Method::POST,
            "/api/v1/users/me/password",
            Some(&here.access),
            Some(json!({"current_password": current, "new_password": new})),
        )
    };
    let (status, body) = read(change("not the current one", NEW_PASSWORD).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"][0]["field"], "current_password");
    let (status, body) = read(change(PASSWORD, PASSWORD).await).await;
    assert_eq!(
        (status, body["error"]["details"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("new_password"))
    );
    let (status, body) = read(change(PASSWORD, NEW_PASSWORD).await).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    let (status, _) = read(app.post("/api/v1/auth/refresh", json!({"refresh_token": elsewhere.refresh})).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the other session ended");
    let (status, _) = read(app.post("/api/v1/auth/refresh", json!({"refresh_token": here.refresh})).await).await;
    assert_eq!(status, StatusCode::OK, "this session stays");
    app.login("change@example.com", NEW_PASSWORD).await;
}

#[tokio::test]
async fn guessing_the_current_password_with_a_stolen_token_backs_off_too() {
    let app = Harness::start().await;
    let (_, session) = app.customer("guarded@example.com").await;
    let guess = |n: usize| {
        app.call(
            Method::POST,
            "/api/v1/users/me/password",
            Some(&session.access),
            Some(json!({"current_password": format!("guess number {n}"), "new_password": NEW_PASSWORD})),
        )
    };
    for n in 0..5 {
        assert_eq!(guess(n).await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    let (status, body) = read(guess(5).await).await;
    assert_eq!((status, code(&body)), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
    let closing = app
        .call(Method::POST, "/api/v1/users/me/deactivate", Some(&session.access), Some(json!({"password": PASSWORD})))
        .await;
    assert_eq!(closing.status(), StatusCode::TOO_MANY_REQUESTS, "closing the account is guarded the same way");
}
