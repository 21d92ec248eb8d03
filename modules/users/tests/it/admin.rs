//! Admin routes: who may call them, listing, roles, deactivation.

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{ADMIN_EMAIL, Harness, code, read};

#[tokio::test]
async fn admin_routes_refuse_anonymous_callers_and_customers() {
    let app = Harness::start().await;
    let (id, customer) = app.customer("curious@example.com").await;
    let (other, _) = app.customer("other@example.com").await;
    let routes = [
        (Method::GET, "/api/v1/users".to_owned(), None),
        (Method::GET, format!("/api/v1/users/{other}"), None),
        (Method::GET, format!("/api/v1/users/{id}"), None),
        (Method::PUT, format!("/api/v1/users/{id}/roles"), Some(json!({"roles": ["admin"]}))),
        (Method::PUT, format!("/api/v1/users/{other}/roles"), Some(json!({"roles": ["customer"]}))),
        (Method::POST, format!("/api/v1/users/{other}/deactivate"), None),
        (Method::POST, format!("/api/v1/users/{other}/reactivate"), None),
        (Method::GET, "/api/v1/auth/keys".to_owned(), None),
        (Method::POST, "/api/v1/auth/keys".to_owned(), None),
        (Method::DELETE, "/api/v1/auth/keys/some-kid".to_owned(), None),
    ];
    for (method, path, body) in routes {
        let (status, answer) = read(app.call(method.clone(), &path, None, body.clone()).await).await;
        assert_eq!((status, code(&answer)), (StatusCode::UNAUTHORIZED, "unauthenticated"), "{method} {path}");
        let (status, answer) = read(app.call(method.clone(), &path, Some(&customer.access), body).await).await;
        assert_eq!((status, code(&answer)), (StatusCode::FORBIDDEN, "forbidden"), "{method} {path}");
    }
    // Nothing changed: the customer is still a customer, the other account still active.
    let admin = app.admin().await;
    let (_, me) = read(app.get_as("/api/v1/users/me", &customer.access).await).await;
    assert_eq!(me["data"]["roles"], json!(["customer"]));
    let (_, them) = read(app.get_as(&format!("/api/v1/users/{other}"), &admin.access).await).await;
    assert_eq!(them["data"]["status"], "active");
}

#[tokio::test]
async fn admins_list_users_with_filters_sort_and_stable_pages() {
    let app = Harness::start().await;
    for n in 0..5 {
        app.register(&format!("shopper{n}@example.com")).await;
    }
    app.register("zed@other.org").await;
    let admin = app.admin().await;
    let list = |query: &str| app.get_as(format!("/api/v1/users?{query}"), &admin.access);

    let (status, body) = read(list("email_prefix=SHOPPER&sort=email&limit=2").await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut emails = Vec::new();
    let mut page = body;
    loop {
        emails.extend(page["data"].as_array().unwrap().iter().map(|u| u["email"].as_str().unwrap().to_owned()));
        let Some(cursor) = page["meta"]["next_cursor"].as_str() else { break };
        let cursor = cursor.to_owned();
        // A user added between pages does not disturb the walk.
        app.register(&format!("late-{}@example.com", emails.len())).await;
        page = read(list(&format!("email_prefix=shopper&sort=email&limit=2&after={cursor}")).await).await.1;
    }
    let expected: Vec<String> = (0..5).map(|n| format!("shopper{n}@example.com")).collect();
    assert_eq!(emails, expected);

    let (_, admins) = read(list("role=admin").await).await;
    let admin_emails: Vec<&Value> = admins["data"].as_array().unwrap().iter().map(|u| &u["email"]).collect();
    assert_eq!(admin_emails, vec![&json!(ADMIN_EMAIL)]);

    let (_, newest) = read(list("limit=1").await).await;
    assert!(newest["data"][0]["email"].as_str().unwrap().starts_with("late-"), "newest first by default: {newest}");

    for (query, expected_code) in
        [("sort=password_hash", "invalid_sort"), ("limit=0", "invalid_limit"), ("after=garbage", "invalid_cursor")]
    {
        let (status, body) = read(list(query).await).await;
        assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, expected_code), "{query}");
    }
    let (status, body) = read(list("role=superuser").await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "unknown role: {body}");
}

#[tokio::test]
async fn roles_change_at_the_next_refresh_and_the_last_admin_stays() {
    let app = Harness::start().await;
    let admin = app.admin().await;
    let (id, customer) = app.customer("promoted@example.com").await;
    let set_roles = |user: &str, roles: Value| {
        app.call(Method::PUT, format!("/api/v1/users/{user}/roles"), Some(&admin.access), Some(json!({"roles": roles})))
    };
    let (status, body) = read(set_roles(&id, json!(["customer", "admin"])).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.events("users.roles_changed").await.len(), 1);
    let (_, refreshed) = read(app.post("/api/v1/auth/refresh", json!({"refresh_token": customer.refresh})).await).await;
    let token = refreshed["data"]["access_token"].as_str().unwrap();
    assert!(app.verifier.verify(token).unwrap().is_admin(), "the new token carries the new role");

    let (status, body) = read(set_roles(&id, json!([])).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // Two admins: demoting one is fine; the remaining one cannot be demoted or deactivated.
    let root = app.verifier.verify(&admin.access).unwrap().subject;
    let (status, _) = read(set_roles(&id, json!(["customer"])).await).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = read(set_roles(&root, json!(["customer"])).await).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "last_admin"));
    let (status, body) =
        read(app.call(Method::POST, &format!("/api/v1/users/{root}/deactivate"), Some(&admin.access), None).await)
            .await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "last_admin"));
}

#[tokio::test]
async fn admins_deactivate_and_reactivate_accounts() {
    let app = Harness::start().await;
    let admin = app.admin().await;
    let (id, _) = app.customer("paused@example.com").await;
    let act = |what: &str| app.call(Method::POST, format!("/api/v1/users/{id}/{what}"), Some(&admin.access), None);
    let (status, body) = read(act("reactivate").await).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "invalid_transition"));
    assert_eq!(read(act("deactivate").await).await.0, StatusCode::OK);
    let (status, body) = read(act("deactivate").await).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "invalid_transition"));
    let (status, body) = read(act("reactivate").await).await;
    assert_eq!((status, body["data"]["status"].as_str()), (StatusCode::OK, Some("active")));
    app.login("paused@example.com", crate::support::PASSWORD).await;
    let deactivated = app.events("users.user_deactivated").await;
    assert_eq!(deactivated[0]["by"], "admin");
    assert_eq!(app.events("users.user_reactivated").await.len(), 1);

    let missing = uuid::Uuid::now_v7();
    let (status, _) = read(app.get_as(&format!("/api/v1/users/{missing}"), &admin.access).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = read(app.get_as("/api/v1/users/not-a-uuid", &admin.access).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_demoted_admins_token_can_no_longer_act() {
    let app = Harness::start().await;
    let root = app.admin().await;
    let (deputy, _) = app.customer("deputy@example.com").await;
    let roles = |token: String, user: &str, roles: Value| {
        let path = format!("/api/v1/users/{user}/roles");
        let app = &app;
        async move { app.call(Method::PUT, path, Some(&token), Some(json!({"roles": roles}))).await }
    };
    assert_eq!(roles(root.access.clone(), &deputy, json!(["admin", "customer"])).await.status(), StatusCode::OK);
    let deputy_token = app.login("deputy@example.com", crate::support::PASSWORD).await.access;
    assert_eq!(app.get_as("/api/v1/users", &deputy_token).await.status(), StatusCode::OK);

    assert_eq!(roles(root.access.clone(), &deputy, json!(["customer"])).await.status(), StatusCode::OK);
    // The token still says admin for up to 15 minutes, but the demotion reached the
    // verifier: it is refused outright (ADR 0020).
    assert!(matches!(
        app.verifier.verify(&deputy_token),
        Err(platform::auth::TokenError::Revoked(platform::auth::revocation::Revoked::RoleWithdrawn))
    ));
    assert_eq!(app.get_as("/api/v1/users", &deputy_token).await.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = read(roles(deputy_token.clone(), &deputy, json!(["admin"])).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "it cannot undo its own demotion");
    let fresh = app.login("deputy@example.com", crate::support::PASSWORD).await.access;
    assert_eq!(app.get_as("/api/v1/users", &fresh).await.status(), StatusCode::FORBIDDEN, "a customer now");
}

#[tokio::test]
async fn the_default_listing_pages_newest_first_and_filters_by_status() {
    let app = Harness::start().await;
    let admin = app.admin().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(app.register(&format!("page{n}@example.com")).await);
    }
    let deactivate =
        app.call(Method::POST, format!("/api/v1/users/{}/deactivate", ids[1]), Some(&admin.access), None).await;
    assert_eq!(deactivate.status(), StatusCode::OK);

    let mut seen = Vec::new();
    let mut path = "/api/v1/users?email_prefix=page&limit=2".to_owned();
    loop {
        let (status, page) = read(app.get_as(&path, &admin.access).await).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(page["data"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().to_owned()));
        let Some(cursor) = page["meta"]["next_cursor"].as_str() else { break };
        path = format!("/api/v1/users?email_prefix=page&limit=2&after={cursor}");
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let (_, closed) = read(app.get_as("/api/v1/users?status=deactivated", &admin.access).await).await;
    let closed: Vec<&str> = closed["data"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(closed, vec![ids[1].as_str()]);

    // A cursor forged for the default sort with a value that is no time: 400, not 500.
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"s": "-created_at", "k": {"value": "yesterday", "id": ids[0]}}).to_string());
    let (status, body) = read(app.get_as(format!("/api/v1/users?after={forged}"), &admin.access).await).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_cursor"));
}

#[tokio::test]
async fn the_port_names_the_active_admins_for_operational_messages() {
    let app = Harness::start().await;
    let admin = app.admin().await;
    let (promoted, _) = app.customer("second-admin@example.com").await;
    app.customer("just-a-customer@example.com").await;
    let roles = json!({"roles": ["admin", "customer"]});
    let (status, body) =
        read(app.call(Method::PUT, &format!("/api/v1/users/{promoted}/roles"), Some(&admin.access), Some(roles)).await)
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let ctx = platform::port::CallContext::system("test");
    let emails: Vec<String> = app.api.admins(&ctx).await.unwrap().into_iter().map(|c| c.email).collect();
    assert_eq!(emails, vec![ADMIN_EMAIL.to_owned(), "second-admin@example.com".to_owned()]);

    let (status, body) =
        read(app.call(Method::POST, &format!("/api/v1/users/{promoted}/deactivate"), Some(&admin.access), None).await)
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let emails: Vec<String> = app.api.admins(&ctx).await.unwrap().into_iter().map(|c| c.email).collect();
    assert_eq!(emails, vec![ADMIN_EMAIL.to_owned()], "deactivated admins are not told");
}
