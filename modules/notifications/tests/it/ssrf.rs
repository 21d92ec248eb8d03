//! SSRF: with private targets not allowed (the default), URLs of loopback, private,
//! link-local and other internal addresses are refused when registered, and a name that
//! resolves inside at delivery time (DNS rebinding) is refused then, before any connection.

use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::events;
use crate::support::{Harness, code};
use crate::webhooks::Receiver;

async fn strict() -> Harness {
    Harness::start_with(|config| config.webhooks.allow_private_targets = false).await
}

#[tokio::test]
async fn internal_addresses_are_refused_at_registration() {
    let app = strict().await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://10.0.0.5/hook",
        "http://192.168.1.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:8080/hook",
        "http://[fd00::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::ffff:0:7f00:1]/hook",
        "http://[2002:a9fe:a9fe::1]/hook",
        "http://[64:ff9b:1::a00:1]/hook",
        "http://0.0.0.0/hook",
        "http://localhost:8080/hook",
    ] {
        let (status, body) = app.create_endpoint(&Uuid::now_v7().to_string(), url, &["orders.order_confirmed"]).await;
        assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"), "{url}: {body}");
        assert_eq!(body["error"]["details"][0]["field"], "url", "{url}");
        assert_eq!(body["error"]["details"][0]["code"], "not_public", "{url}: {body}");
    }
    let (status, body) =
        app.create_endpoint(&Uuid::now_v7().to_string(), "file:///etc/passwd", &["orders.order_confirmed"]).await;
    assert_eq!(
        (status, body["error"]["details"][0]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid"))
    );
    let (_, list) = app.admin(Method::GET, "/api/v1/webhook-endpoints", None).await;
    assert_eq!(list["data"], json!([]));
}

#[tokio::test]
async fn a_name_that_resolves_inside_at_delivery_time_is_refused_before_connecting() {
    let app = strict().await;
    let receiver = Receiver::start().await;
    // As if `localhost` had resolved to a public address when it was registered and to
    // 127.0.0.1 now (DNS rebinding): the row is written as registration would have.
    let rebinding = receiver.url.replace("127.0.0.1", "localhost");
    let literal = receiver.url.clone();
    let mut db = app.database.admin_connection().await.unwrap();
    for url in [&rebinding, &literal] {
        sqlx::query(
            "INSERT INTO notifications.webhook_endpoints (id, url, event_types, secret, created_by, created_at, updated_at)
             VALUES ($1, $2, ARRAY['orders.order_confirmed'], 'whsec_test', $3, now(), now())",
        )
        .bind(Uuid::now_v7())
        .bind(url)
        .bind(Uuid::now_v7())
        .execute(&mut db)
        .await
        .unwrap();
    }
    app.publish("orders", &events::confirmed(Uuid::now_v7(), events::order())).await;

    let notifications = app.settled_notifications(3).await;
    let webhooks: Vec<_> = notifications.iter().filter(|n| n["channel"] == "webhook").collect();
    assert_eq!(webhooks.len(), 2);
    for webhook in webhooks {
        assert_eq!(webhook["status"], "failed", "{webhook}");
        assert!(webhook["reason"].as_str().unwrap().contains("is not a public address"), "{webhook}");
        let attempts = app.attempts(webhook["id"].as_str().unwrap()).await;
        assert_eq!(attempts.len(), 1, "a refusal is not retried");
        assert_eq!(attempts[0]["outcome"], "permanent_failure");
    }
    assert!(receiver.deliveries().is_empty(), "nothing reached the internal address");
}
