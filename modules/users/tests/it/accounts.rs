//! Registration, the caller's own profile and preferences, closing one's own account, and
//! the contact port.

use platform::port::CallContext;
use reqwest::{Method, StatusCode};
use serde_json::json;
use users_contract::{AccountStatus, UserId, UsersError};

use crate::support::{Harness, PASSWORD, code, read};

#[tokio::test]
async fn registration_creates_an_unverified_customer_and_announces_it() {
    let app = Harness::start().await;
    let response = app
        .post("/api/v1/users", json!({"email": "  Ada@Example.COM ", "password": PASSWORD, "display_name": " Ada "}))
        .await;
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let (status, body) = read(response).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let user = &body["data"];
    assert_eq!(location, format!("/api/v1/users/{}", user["id"].as_str().unwrap()));
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["display_name"], "Ada");
    assert_eq!(user["roles"], json!(["customer"]));
    assert_eq!(user["email_verified"], false);
    assert_eq!(user["preferences"]["email"], json!({"transactional": true, "marketing": false}));
    assert!(body.get("password").is_none() && !body.to_string().contains("argon2"), "no hash leaks: {body}");

    let registered = app.events("users.user_registered").await;
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0]["user_id"], user["id"]);
    assert!(registered[0]["verification_request"].is_string());
}

#[tokio::test]
async fn the_same_email_in_any_case_registers_once() {
    let app = Harness::start().await;
    app.register("grace@example.com").await;
    for variant in ["grace@example.com", "Grace@Example.com", " GRACE@EXAMPLE.COM"] {
        let response =
            app.post("/api/v1/users", json!({"email": variant, "password": PASSWORD, "display_name": "G"})).await;
        let (status, body) = read(response).await;
        assert_eq!(status, StatusCode::CONFLICT, "{variant}: {body}");
        assert_eq!(code(&body), "email_taken");
    }
    assert_eq!(app.events("users.user_registered").await.len(), 1);
}

#[tokio::test]
async fn registration_rules_answer_per_field_and_write_nothing() {
    let app = Harness::start().await;
    let cases = [
        (json!({"email": "not-an-email", "password": PASSWORD, "display_name": "X"}), "email", "email"),
        (json!({"email": "a@example.com", "password": "elevenchars", "display_name": "X"}), "password", "length"),
        (json!({"email": "a@example.com", "password": "x".repeat(129), "display_name": "X"}), "password", "length"),
        (
            json!({"email": "a@example.com", "password": "Password1234", "display_name": "X"}),
            "password",
            "common_password",
        ),
        (json!({"email": "a@example.com", "password": PASSWORD, "display_name": "   "}), "display_name", "invalid"),
    ];
    for (body, field, failure) in cases {
        let (status, answer) = read(app.post("/api/v1/users", body.clone()).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert_eq!(code(&answer), "validation_failed");
        let details = answer["error"]["details"].as_array().unwrap();
        assert!(details.iter().any(|d| d["field"] == field && d["code"] == failure), "{body}: {answer}");
    }
    let (status, answer) =
        read(app.post("/api/v1/users", json!({"email": "a@example.com", "password": PASSWORD})).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "missing field: {answer}");
    let (status, _) = read(
        app.post(
            "/api/v1/users",
            json!({"email": "a@example.com", "password": PASSWORD, "display_name": "A", "role": "admin"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "unknown fields are refused, not ignored");
    assert!(app.events("users.user_registered").await.is_empty());
    let (status, body) =
        read(app.post("/api/v1/auth/login", json!({"email": "a@example.com", "password": PASSWORD})).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no account was created: {body}");
}

#[tokio::test]
async fn profile_changes_keep_transactional_email_on_and_publish_preferences() {
    let app = Harness::start().await;
    let (id, session) = app.customer("pref@example.com").await;

    let (status, body) = read(app.get_as("/api/v1/users/me", &session.access).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["id"], id);

    let patch = |body| app.call(Method::PATCH, "/api/v1/users/me", Some(&session.access), Some(body));
    let (status, body) = read(patch(json!({"preferences": {"email": {"transactional": false}}})).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "preferences.email.transactional");
    assert!(app.events("users.preferences_changed").await.is_empty());

    let (status, body) = read(
        patch(json!({"display_name": "Pat", "preferences": {"email": {"marketing": true}, "webhook": {"transactional": false}}}))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["display_name"], "Pat");
    assert_eq!(body["data"]["preferences"]["email"], json!({"transactional": true, "marketing": true}));
    assert_eq!(body["data"]["preferences"]["webhook"], json!({"transactional": false, "marketing": false}));
    let changed = app.events("users.preferences_changed").await;
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["preferences"], body["data"]["preferences"]);

    // A name-only change publishes no preferences event.
    let (status, _) = read(patch(json!({"display_name": "Patricia"})).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.events("users.preferences_changed").await.len(), 1);

    let contact = app.api.contact(&CallContext::system("test"), UserId(id.parse().unwrap())).await.unwrap();
    assert_eq!(contact.email, "pref@example.com");
    assert_eq!(contact.display_name, "Patricia");
    assert!(!contact.email_verified);
    assert!(contact.preferences.email.marketing);
    assert_eq!(contact.status, AccountStatus::Active);
}

#[tokio::test]
async fn the_contact_port_names_unknown_users() {
    let app = Harness::start().await;
    let nobody = UserId(uuid::Uuid::now_v7());
    let error = app.api.contact(&CallContext::system("test"), nobody).await.unwrap_err();
    assert!(matches!(error, UsersError::UserNotFound(id) if id == nobody), "{error:?}");
}

#[tokio::test]
async fn closing_your_own_account_ends_its_sessions_and_sign_ins() {
    let app = Harness::start().await;
    let (id, session) = app.customer("leaving@example.com").await;
    let close = |password: &str| {
        app.call(
            Method::POST,
            "/api/v1/users/me/deactivate",
            Some(&session.access),
            Some(json!({"password": password})),
        )
    };
    let (status, _) = read(close("not my password at all").await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = read(close(PASSWORD).await).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    let (status, body) = read(app.post("/api/v1/auth/refresh", json!({"refresh_token": session.refresh})).await).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_refresh_token"));
    let (status, body) =
        read(app.post("/api/v1/auth/login", json!({"email": "leaving@example.com", "password": PASSWORD})).await).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "account_deactivated"));
    // Its access token is refused outright: the account's closing reached the verifier.
    let (status, body) = read(app.get_as("/api/v1/users/me", &session.access).await).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_token"));
    let deactivated = app.events("users.user_deactivated").await;
    assert_eq!(deactivated.len(), 1);
    assert_eq!((deactivated[0]["user_id"].as_str(), deactivated[0]["by"].as_str()), (Some(id.as_str()), Some("user")));
}
