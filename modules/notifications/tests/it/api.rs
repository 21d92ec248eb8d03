//! The notification history: people see their own, admins everyone's with filters, and
//! admins retry failed notifications.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;

use crate::events;
use crate::support::{Harness, code, read};

fn ids(body: &Value) -> Vec<String> {
    body["data"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn people_see_their_own_notifications_and_admins_filter_everyones() {
    let app = Harness::start().await;
    let ada = app.users.add("ada@example.com", "Ada Lovelace");
    let grace = app.users.add("grace@example.com", "Grace Hopper");
    for _ in 0..3 {
        app.publish("orders", &events::confirmed(ada, Uuid::now_v7())).await;
    }
    app.publish("orders", &events::confirmed(grace, Uuid::now_v7())).await;
    app.settled_notifications(4).await;

    let ada_token = app.token_of(ada);
    let (status, first) =
        read(app.call(Method::GET, "/api/v1/notifications?limit=2", Some(&ada_token), None).await).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(ids(&first).len(), 2);
    let cursor = first["meta"]["next_cursor"].as_str().unwrap();
    let (_, second) = read(
        app.call(Method::GET, format!("/api/v1/notifications?limit=2&after={cursor}"), Some(&ada_token), None).await,
    )
    .await;
    assert_eq!(ids(&second).len(), 1);
    assert!(second["meta"]["next_cursor"].is_null());
    let all: Vec<Value> =
        first["data"].as_array().unwrap().iter().chain(second["data"].as_array().unwrap()).cloned().collect();
    assert!(all.iter().all(|n| n["user_id"] == ada.to_string() && n["status"] == "sent"));

    let (status, body) =
        read(app.call(Method::GET, format!("/api/v1/notifications?user_id={grace}"), Some(&ada_token), None).await)
            .await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    let grace_notification = app.notifications().await.into_iter().find(|n| n["user_id"] == grace.to_string()).unwrap();
    let grace_id = grace_notification["id"].as_str().unwrap();
    let (status, _) =
        read(app.call(Method::GET, format!("/api/v1/notifications/{grace_id}"), Some(&ada_token), None).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "someone else's notification is not confirmed to exist");

    let (_, everyone) = app.admin(Method::GET, "/api/v1/notifications", None).await;
    assert_eq!(ids(&everyone).len(), 4);
    let (_, graces) = app
        .admin(
            Method::GET,
            format!(
                "/api/v1/notifications?user_id={grace}&channel=email&status=sent&event_type=orders.order_confirmed"
            ),
            None,
        )
        .await;
    assert_eq!(ids(&graces), vec![grace_id.to_owned()]);
    let (_, none) = app.admin(Method::GET, "/api/v1/notifications?status=failed", None).await;
    assert!(ids(&none).is_empty());
    let (status, body) = app.admin(Method::GET, "/api/v1/notifications?status=lost", None).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_query"));

    let (status, detail) = app.admin(Method::GET, format!("/api/v1/notifications/{grace_id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    insta::assert_json_snapshot!("notification_detail", detail, {
        ".data.id" => "[id]", ".data.event_id" => "[id]", ".data.user_id" => "[id]", ".data.recipient" => "[recipient]", ".data.subject" => "[subject]",
        ".data.**.at" => "[time]", ".data.sent_at" => "[time]", ".data.created_at" => "[time]",
        ".data.updated_at" => "[time]", ".data.delivery_attempts[].latency_ms" => "[ms]",
    });
}

#[tokio::test]
async fn admins_retry_a_failed_notification_and_it_is_sent() {
    let app = Harness::start().await;
    app.smtp().reply_to_data(&[(554, "5.7.1 Rejected for policy reasons")]);
    let ada = app.users.add("ada@example.com", "Ada Lovelace");
    app.publish("orders", &events::confirmed(ada, events::order())).await;
    let notifications = app.settled_notifications(1).await;
    assert_eq!(notifications[0]["status"], "failed");
    let id = notifications[0]["id"].as_str().unwrap();

    let (_, failed) = app.admin(Method::GET, "/api/v1/notifications?status=failed", None).await;
    assert_eq!(ids(&failed), vec![id.to_owned()]);
    let (status, body) = app.admin(Method::POST, format!("/api/v1/notifications/{id}/retry"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["data"]["status"], "pending");
    app.await_mail(1).await;
    let notifications = app.settled_notifications(1).await;
    assert_eq!(notifications[0]["status"], "sent");
    assert_eq!(app.attempts(id).await.len(), 2);

    let (status, body) = app.admin(Method::POST, format!("/api/v1/notifications/{id}/retry"), None).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "invalid_transition"));
    let (status, _) = app.admin(Method::POST, format!("/api/v1/notifications/{}/retry", Uuid::now_v7()), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.smtp().received().len(), 1);
}

#[tokio::test]
async fn delivery_attempts_are_counted_in_prometheus_metrics() {
    let app = Harness::start().await;
    let ada = app.users.add("ada@example.com", "Ada Lovelace");
    app.publish("orders", &events::confirmed(ada, events::order())).await;
    app.settled_notifications(1).await;
    let rendered = app.metrics.render();
    assert!(
        rendered.contains(r#"bulkhead_notifications_delivery_attempts_total{channel="email",outcome="succeeded"} 1"#),
        "{rendered}"
    );
    assert!(rendered.contains("bulkhead_notifications_delivery_duration_seconds_bucket"));
}

#[tokio::test]
async fn every_route_is_documented_and_every_schema_it_names_exists() {
    use platform::Module;

    let pool = sqlx::PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
    let users = std::sync::Arc::new(crate::support::FakeUsers::default());
    let verifier = platform::auth::JwtVerifier::new("bulkhead", "bulkhead-api");
    let module =
        notifications::NotificationsModule::new(pool, users, verifier, notifications::NotificationsConfig::default())
            .unwrap();
    let (_, api) = module.public_routes().split_for_parts();
    let spec = serde_json::to_value(&api).unwrap();
    let mut paths: Vec<String> = spec["paths"].as_object().unwrap().keys().cloned().collect();
    paths.sort();
    insta::assert_json_snapshot!("paths", paths);

    fn refs(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    found.push(target.clone());
                }
                map.values().for_each(|v| refs(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    refs(&spec, &mut found);
    assert!(found.len() > 10, "{found:?}");
    for target in found {
        let name = target.trim_start_matches("#/components/schemas/");
        assert!(spec["components"]["schemas"].get(name).is_some(), "{target} is not in the document");
    }
}

#[tokio::test]
async fn a_notification_its_delivery_job_left_pending_is_failed_by_the_sweep_and_admins_can_retry_it() {
    let app = Harness::start_with(|config| config.sweep_every = std::time::Duration::from_secs(1)).await;
    let ada = app.users.add("ada@example.com", "Ada Lovelace");
    app.publish("orders", &events::confirmed(ada, events::order())).await;
    app.publish("orders", &events::confirmed(ada, Uuid::now_v7())).await;
    let notifications = app.settled_notifications(2).await;
    let (stale, fresh) = (notifications[0]["id"].as_str().unwrap(), notifications[1]["id"].as_str().unwrap());
    // As a job that ended without recording an outcome leaves it: pending, untouched for a
    // day (longer than any retry window); and one pending only just now.
    let mut db = app.database.admin_connection().await.unwrap();
    sqlx::query(
        "UPDATE notifications.notifications
            SET status = 'pending', updated_at = CASE WHEN id = $1::uuid THEN now() - interval '1 day' ELSE now() END
          WHERE id IN ($1::uuid, $2::uuid)",
    )
    .bind(stale)
    .bind(fresh)
    .execute(&mut db)
    .await
    .unwrap();

    let swept = platform::testing::eventually(std::time::Duration::from_secs(20), || async {
        let rows = app.notifications().await;
        Ok(rows.into_iter().find(|n| n["id"] == stale && n["status"] == "failed"))
    })
    .await
    .unwrap();
    assert_eq!(swept["reason"], "no outcome recorded (the delivery job ended)");
    let rows = app.notifications().await;
    assert_eq!(rows.iter().find(|n| n["id"] == fresh).unwrap()["status"], "pending", "a recent one is left alone");

    let (status, body) = app.admin(Method::POST, format!("/api/v1/notifications/{stale}/retry"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    app.await_mail(3).await;
}

#[tokio::test]
async fn customers_see_a_generic_reason_for_a_failed_email_and_admins_see_the_servers_words() {
    let app = Harness::start().await;
    app.smtp().reply_to_data(&[(554, "5.7.1 Rejected by relay mx7.internal.example")]);
    let ada = app.users.add("ada@example.com", "Ada Lovelace");
    app.publish("orders", &events::confirmed(ada, events::order())).await;
    let notifications = app.settled_notifications(1).await;
    let id = notifications[0]["id"].as_str().unwrap();

    let token = app.token_of(ada);
    let (_, list) = read(app.call(Method::GET, "/api/v1/notifications", Some(&token), None).await).await;
    assert_eq!(list["data"][0]["reason"], "could not be delivered");
    let (_, detail) =
        read(app.call(Method::GET, format!("/api/v1/notifications/{id}"), Some(&token), None).await).await;
    assert_eq!(detail["data"]["reason"], "could not be delivered");
    assert!(!detail.to_string().contains("mx7.internal"), "{detail}");

    let (_, detail) = app.admin(Method::GET, format!("/api/v1/notifications/{id}"), None).await;
    assert!(detail["data"]["reason"].as_str().unwrap().contains("mx7.internal"), "{detail}");
    assert!(detail["data"]["delivery_attempts"][0]["error"].as_str().unwrap().contains("mx7.internal"));
}
