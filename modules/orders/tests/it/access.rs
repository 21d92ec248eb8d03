//! Who sees and changes which orders: the customer who placed it, admins, other customers
//! (404, as if it did not exist) and anonymous callers (401); and the status stream.

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::support::{Harness, code, order_body, read};

#[tokio::test]
async fn an_order_is_visible_to_its_customer_and_admins_only() {
    let app = Harness::start().await;
    let (order, _) = app.order(&[("MUG-001", 1)]).await;
    let (_, stranger) = app.stranger();
    let path = format!("/api/v1/orders/{order}");
    for (who, token, expected) in [
        ("owner", Some(app.customer_token.as_str()), StatusCode::OK),
        ("admin", Some(app.admin_token.as_str()), StatusCode::OK),
        ("another customer", Some(stranger.as_str()), StatusCode::NOT_FOUND),
        ("anonymous", None, StatusCode::UNAUTHORIZED),
    ] {
        for (method, suffix) in [(Method::GET, ""), (Method::GET, "/events")] {
            let status = app.call(method, format!("{path}{suffix}"), token, None).await.status();
            assert_eq!(status, expected, "{who} GET {path}{suffix}");
        }
    }
    let (status, _) = read(app.call(Method::POST, format!("{path}/cancel"), Some(&stranger), None).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another customer cannot cancel it");
    let missing = Uuid::now_v7();
    let (status, body) =
        read(app.call(Method::GET, format!("/api/v1/orders/{missing}"), Some(&app.admin_token), None).await).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    assert_eq!(app.get(order).await["status"], "pending");
}

#[tokio::test]
async fn shipping_and_delivering_are_for_admins() {
    let app = Harness::start().await;
    let (order, _) = app.order(&[("MUG-001", 1)]).await;
    for action in ["ship", "deliver"] {
        let path = format!("/api/v1/orders/{order}/{action}");
        let body = Some(json!({"carrier": "DHL", "tracking_number": "1"}));
        let (status, _) = read(app.call(Method::POST, &path, None, body.clone()).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, answer) = read(app.call(Method::POST, &path, Some(&app.customer_token), body).await).await;
        assert_eq!((status, code(&answer)), (StatusCode::FORBIDDEN, "forbidden"));
    }
    let anonymous = app
        .client
        .post(app.served.url("/api/v1/orders"))
        .header("idempotency-key", "a")
        .json(&order_body(&[("MUG-001", 1)]))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn customers_list_their_own_orders_and_admins_filter_everyone_s() {
    let app = Harness::start().await;
    let mine: Vec<Uuid> = futures::future::join_all((0..3).map(|_| app.order(&[("MUG-001", 1)])))
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let (other, other_token) = app.stranger();
    let (status, theirs) = app.place_with_key("other-1", &other_token, order_body(&[("TEE-002", 2)])).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let app = &app;
    let list = |token: String, query: String| async move {
        let (status, body) =
            read(app.call(Method::GET, format!("/api/v1/orders{query}"), Some(&token), None).await).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().parse::<Uuid>().unwrap())
            .collect::<Vec<_>>()
    };
    let seen = list(app.customer_token.clone(), "".to_owned()).await;
    let mut newest_first = mine.clone();
    newest_first.sort();
    newest_first.reverse();
    assert_eq!(seen, newest_first, "only mine, newest first");
    assert_eq!(list(app.admin_token.clone(), "".to_owned()).await.len(), 4);
    let (status, _) =
        read(app.call(Method::GET, format!("/api/v1/orders?user_id={other}"), Some(&app.customer_token), None).await)
            .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let filtered = list(app.admin_token.clone(), "?sort=-total&limit=1".to_owned()).await;
    assert_eq!(
        filtered,
        vec![theirs["data"]["id"].as_str().unwrap().parse::<Uuid>().unwrap()],
        "the largest total first"
    );

    let mut walked = Vec::new();
    let mut path = "/api/v1/orders?sort=created_at&limit=2".to_owned();
    loop {
        let (_, page) = read(app.call(Method::GET, &path, Some(&app.admin_token), None).await).await;
        walked.extend(page["data"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap().to_owned()));
        let Some(cursor) = page["meta"]["next_cursor"].as_str() else { break };
        path = format!("/api/v1/orders?sort=created_at&limit=2&after={cursor}");
    }
    assert_eq!(walked.len(), 4);
    let (status, body) =
        read(app.call(Method::GET, "/api/v1/orders?status=nonsense", Some(&app.admin_token), None).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn the_event_stream_sends_the_history_then_each_new_status() {
    let app = Harness::start().await;
    let (order, total) = app.order(&[("MUG-001", 1)]).await;
    let response =
        app.call(Method::GET, format!("/api/v1/orders/{order}/events"), Some(&app.customer_token), None).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = response.bytes_stream();
    let mut received = String::new();
    let mut next_status = async |received: &mut String| loop {
        if let Some(end) = received.find("\n\n") {
            let frame: String = received.drain(..end + 2).collect();
            if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                let entry: serde_json::Value = serde_json::from_str(data).unwrap();
                return entry["status"].as_str().unwrap().to_owned();
            }
            continue;
        }
        let chunk =
            tokio::time::timeout(std::time::Duration::from_secs(15), stream.next()).await.unwrap().unwrap().unwrap();
        received.push_str(&String::from_utf8_lossy(&chunk));
    };
    assert_eq!(next_status(&mut received).await, "pending");
    app.publish(
        "inventory",
        &inventory_contract::events::StockReserved {
            order_id: order,
            reservation_id: Uuid::now_v7(),
            lines: Vec::new(),
            expires_at: chrono::Utc::now(),
            reserved_at: chrono::Utc::now(),
        },
    )
    .await;
    assert_eq!(next_status(&mut received).await, "awaiting_payment");
    app.publish(
        "payments",
        &payments_contract::events::PaymentFailed {
            payment_id: Uuid::now_v7().into(),
            order_id: order,
            code: payments_contract::events::FailureCode::InsufficientFunds,
            message: None,
            failed_at: chrono::Utc::now(),
        },
    )
    .await;
    assert_eq!(next_status(&mut received).await, "cancelled");
    let _ = total;

    // Reconnecting with Last-Event-ID resumes after what was seen.
    let resumed = app
        .client
        .get(app.served.url(&format!("/api/v1/orders/{order}/events")))
        .bearer_auth(&app.customer_token)
        .header("last-event-id", first_seq(&app, order).await.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let statuses: Vec<&str> = resumed
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| {
            if d.contains("\"awaiting_payment\"") {
                "awaiting_payment"
            } else if d.contains("\"cancelled\"") {
                "cancelled"
            } else {
                "other"
            }
        })
        .collect();
    assert_eq!(statuses, vec!["awaiting_payment", "cancelled"], "the stream ends after the final status");

    // Reconnecting after the end (as EventSource does) ends at once instead of polling forever.
    let after_the_end = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        app.client
            .get(app.served.url(&format!("/api/v1/orders/{order}/events")))
            .bearer_auth(&app.customer_token)
            .header("last-event-id", i64::MAX.to_string())
            .send(),
    )
    .await
    .unwrap()
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(!after_the_end.contains("data:"), "{after_the_end}");
}

async fn first_seq(app: &Harness, order: Uuid) -> i64 {
    let mut db = app.database.admin_connection().await.unwrap();
    sqlx::query_scalar("SELECT min(seq) FROM orders.order_timeline WHERE order_id = $1")
        .bind(order)
        .fetch_one(&mut db)
        .await
        .unwrap()
}
