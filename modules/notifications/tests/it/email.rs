//! Email: what is sent for each event, rendered; links minted at send time and kept out of
//! rows and job payloads; preferences and account status; exactly once under duplicates,
//! redeliveries and an SMTP server that is down, then up; transient and permanent SMTP
//! failures.

use std::sync::atomic::Ordering;
use std::time::Duration;

use platform::bus::RewindTarget;
use platform::testing::eventually;
use serde_json::{Value, json};
use users_contract::{AccountStatus, ChannelPreferences, Preferences};
use uuid::Uuid;

use crate::events;
use crate::smtp::{Received, TestSmtp, free_port};
use crate::support::{self, Harness, config};

/// What a snapshot shows of a received message.
fn shown(received: &Received) -> Value {
    let message = received.parsed();
    json!({
        "envelope": {"from": received.from, "to": received.to},
        "from": message.from().and_then(|a| a.first()).map(|a| format!("{} <{}>", a.name().unwrap_or_default(), a.address().unwrap_or_default())),
        "to": message.to().and_then(|a| a.first()).map(|a| format!("{} <{}>", a.name().unwrap_or_default(), a.address().unwrap_or_default())),
        "subject": message.subject(),
        "message_id": message.message_id(),
        "text": message.body_text(0).map(|t| t.replace("\r\n", "\n")),
        "html": message.body_html(0).map(|t| t.replace("\r\n", "\n")),
    })
}

#[tokio::test]
async fn a_confirmed_order_emails_its_customer_once_as_rendered() {
    let app = Harness::start().await;
    let ada = app.users.add("ada@example.com", "Ada Lovelace");
    app.publish("orders", &events::confirmed(ada, events::order())).await;

    let received = app.await_mail(1).await;
    insta::assert_json_snapshot!("order_confirmed_email", shown(&received[0]), {
        ".message_id" => "[message id]",
    });
    let notifications = app.settled_notifications(1).await;
    assert_eq!(notifications[0]["status"], "sent");
    assert_eq!(notifications[0]["channel"], "email");
    assert_eq!(notifications[0]["user_id"], ada.to_string());
    assert_eq!(notifications[0]["subject"], "Order 0193b5f2-8a4e-7c3d-9a51-000000000001 confirmed");
    let message_id = received[0].parsed().message_id().unwrap().to_owned();
    assert_eq!(message_id, format!("{}@notifications.bulkhead", notifications[0]["id"].as_str().unwrap()));
}

#[tokio::test]
async fn every_order_and_payment_event_reaches_the_customer_of_its_order() {
    let app = Harness::start().await;
    let ada = app.users.add("ada@example.com", "Ada Lovelace");
    let order = events::order();
    app.publish("orders", &events::placed(ada, order)).await;
    app.publish("orders", &events::shipped(ada, order)).await;
    app.publish("orders", &events::cancelled(ada, order)).await;
    app.publish("payments", &payments_contract::fixtures::declined(order)).await;
    app.publish("payments", &events::refunded(order)).await;

    let received = app.await_mail(4).await;
    let mut subjects: Vec<String> =
        received.iter().map(|r| r.parsed().subject().unwrap_or_default().to_owned()).collect();
    subjects.sort();
    assert_eq!(
        subjects,
        vec![
            format!("Order {order} cancelled"),
            format!("Order {order} shipped"),
            format!("Payment for order {order} failed"),
            format!("Refund for order {order}"),
        ]
    );
    assert!(received.iter().all(|r| r.to == vec!["<ada@example.com>".to_owned()]), "{:?}", received[0].to);
    let refund = received.iter().find(|r| r.parsed().subject().unwrap_or_default().starts_with("Refund")).unwrap();
    insta::assert_json_snapshot!("payment_refunded_email", shown(refund), {
        ".message_id" => "[message id]", ".subject" => "[subject]", ".text" => insta::dynamic_redaction(redact_order),
        ".html" => insta::dynamic_redaction(redact_order),
    });
}

fn redact_order(value: insta::internals::Content, _: insta::internals::ContentPath<'_>) -> String {
    value.as_str().unwrap_or_default().replace(&events::order().to_string(), "[order id]")
}

#[tokio::test]
async fn the_welcome_email_carries_a_link_minted_when_it_is_sent_and_stored_nowhere() {
    let app = Harness::start().await;
    let ada = app.users.add("ada@example.com", "Ada Lovelace");
    app.publish("users", &events::registered(ada)).await;

    let received = app.await_mail(1).await;
    let minted = app.users.minted.lock().unwrap().clone();
    assert_eq!(minted.len(), 1, "one link, minted at send time");
    let text = received[0].parsed().body_text(0).unwrap().to_string();
    assert!(text.contains(&minted[0].url), "{text}");
    let secret = (minted[0].token.clone(), minted[0].expires_at.format("%Y-%m-%d %H:%M UTC").to_string());
    let redact = move |value: insta::internals::Content, _: insta::internals::ContentPath<'_>| {
        value.as_str().unwrap_or_default().replace(&secret.0, "[token]").replace(&secret.1, "[expiry]")
    };
    insta::assert_json_snapshot!("welcome_email", shown(&received[0]), {
        ".message_id" => "[message id]",
        ".text" => insta::dynamic_redaction(redact.clone()),
        ".html" => insta::dynamic_redaction(redact),
    });

    // The secret is in the message only: not in the notification, its attempts or its job.
    let mut db = app.database.admin_connection().await.unwrap();
    let everything: Vec<String> = sqlx::query_scalar(
        "SELECT to_jsonb(n)::text FROM notifications.notifications n
          UNION ALL SELECT to_jsonb(a)::text FROM notifications.delivery_attempts a
          UNION ALL SELECT convert_from(job, 'UTF8') FROM apalis.jobs WHERE job_type LIKE 'notifications.%'",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert!(everything.len() >= 3, "{everything:?}");
    assert!(everything.iter().all(|row| !row.contains(&minted[0].token)), "{everything:?}");
}

#[tokio::test]
async fn a_reset_link_that_can_no_longer_be_minted_fails_the_email_with_its_cause() {
    let app = Harness::start().await;
    let ada = app.users.add("ada@example.com", "Ada Lovelace");
    let event = events::reset_requested(ada);
    app.users.lapsed.lock().unwrap().push(event.request_id.0);
    app.publish("users", &event).await;

    let notifications = app.settled_notifications(1).await;
    assert_eq!(notifications[0]["status"], "failed");
    assert!(notifications[0]["reason"].as_str().unwrap().starts_with("link_unavailable"), "{}", notifications[0]);
    assert_eq!(app.attempts(notifications[0]["id"].as_str().unwrap()).await.len(), 1, "not retried");
    assert!(app.smtp().received().is_empty());
}

#[tokio::test]
async fn the_same_event_published_twice_and_redelivered_sends_one_email() {
    let app = Harness::start().await;
    let ada = app.users.add("ada@example.com", "Ada Lovelace");
    let event = events::confirmed(ada, events::order());
    app.publish("orders", &event).await;
    app.publish("orders", &event).await;
    app.await_mail(1).await;
    app.settle().await;

    // Every event of orders handled again, with the same ids.
    app.bus.rewind("notifications.orders", RewindTarget::Position(0)).await.unwrap();
    app.settle().await;
    app.settled_notifications(1).await;
    assert_eq!(app.notifications().await.len(), 1);
    assert_eq!(app.smtp().received().len(), 1);
}

#[tokio::test]
async fn an_smtp_server_down_then_up_gets_the_message_exactly_once() {
    let port = free_port();
    let mut config = config(port);
    // Enough attempts to outlast the server's start on a busy machine.
    config.email.retry = crate::support::fast(200);
    let app = Harness::start_on(None, config).await;
    let ada = app.users.add("ada@example.com", "Ada Lovelace");
    app.publish("orders", &events::confirmed(ada, events::order())).await;

    // Nothing listens: attempts fail and are retried.
    let id = eventually(Duration::from_secs(20), || async {
        let rows = app.notifications().await;
        let Some(id) = rows.first().and_then(|n| n["id"].as_str()).map(str::to_owned) else { return Ok(None) };
        Ok((app.attempts(&id).await.len() >= 2).then_some(id))
    })
    .await
    .unwrap();
    let server = TestSmtp::on(port).await;
    let received = eventually(Duration::from_secs(20), || async {
        let received = server.received();
        Ok((!received.is_empty()).then_some(received))
    })
    .await
    .unwrap();
    app.settled_notifications(1).await;
    assert_eq!(received.len(), 1);
    assert_eq!(server.received().len(), 1, "exactly once");
    let attempts = app.attempts(&id).await;
    let outcomes: Vec<&str> = attempts.iter().map(|a| a["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes.last(), Some(&"succeeded"));
    assert!(outcomes[..outcomes.len() - 1].iter().all(|o| *o == "transient_failure"), "{outcomes:?}");
    assert!(attempts[0]["error"].as_str().unwrap().to_lowercase().contains("connect"), "{}", attempts[0]);
}

#[tokio::test]
async fn a_4xx_reply_is_retried_until_the_message_is_accepted() {
    let app = Harness::start().await;
    app.smtp().reply_to_data(&[(451, "4.3.0 Try again later"), (421, "4.7.0 Busy")]);
    let ada = app.users.add("ada@example.com", "Ada Lovelace");
    app.publish("orders", &events::confirmed(ada, events::order())).await;

    app.await_mail(1).await;
    let notifications = app.settled_notifications(1).await;
    assert_eq!(notifications[0]["status"], "sent");
    let attempts = app.attempts(notifications[0]["id"].as_str().unwrap()).await;
    let summary: Vec<(String, Value)> =
        attempts.iter().map(|a| (a["outcome"].as_str().unwrap().to_owned(), a["response_code"].clone())).collect();
    assert_eq!(
        summary,
        vec![
            ("transient_failure".to_owned(), json!(451)),
            ("transient_failure".to_owned(), json!(421)),
            ("succeeded".to_owned(), Value::Null),
        ]
    );
    assert_eq!(app.smtp().received().len(), 1);
}

#[tokio::test]
async fn credentials_the_relay_refuses_are_retried_until_it_accepts_them_not_failed_per_message() {
    let app = Harness::start_with(|config| {
        if let notifications::MailTransport::Smtp(smtp) = &mut config.email.transport {
            smtp.username = Some("bulkhead".to_owned());
            smtp.password = Some(secrecy::SecretString::from("wrong, then fixed"));
        }
    })
    .await;
    app.smtp().reply_to_auth(&[
        (535, "5.7.8 Authentication credentials invalid"),
        (535, "5.7.8 Authentication credentials invalid"),
    ]);
    let ada = app.users.add("ada@example.com", "Ada Lovelace");
    app.publish("orders", &events::confirmed(ada, events::order())).await;

    app.await_mail(1).await;
    let notifications = app.settled_notifications(1).await;
    assert_eq!(notifications[0]["status"], "sent");
    let attempts = app.attempts(notifications[0]["id"].as_str().unwrap()).await;
    let summary: Vec<(String, Value)> =
        attempts.iter().map(|a| (a["outcome"].as_str().unwrap().to_owned(), a["response_code"].clone())).collect();
    assert_eq!(
        summary,
        vec![
            ("transient_failure".to_owned(), json!(535)),
            ("transient_failure".to_owned(), json!(535)),
            ("succeeded".to_owned(), Value::Null),
        ]
    );
}

#[tokio::test]
async fn a_relay_without_a_usable_authentication_mechanism_is_retried_not_failed() {
    let app = Harness::start_with(|config| {
        if let notifications::MailTransport::Smtp(smtp) = &mut config.email.transport {
            smtp.username = Some("bulkhead".to_owned());
            smtp.password = Some(secrecy::SecretString::from("secret"));
        }
        config.email.retry = crate::support::fast(3);
    })
    .await;
    app.smtp().advertise_auth(false);
    let ada = app.users.add("ada@example.com", "Ada Lovelace");
    app.publish("orders", &events::confirmed(ada, events::order())).await;

    let notifications = app.settled_notifications(1).await;
    let attempts = app.attempts(notifications[0]["id"].as_str().unwrap()).await;
    assert_eq!(attempts.len(), 3, "every attempt is made: {attempts:?}");
    assert!(attempts.iter().all(|a| a["outcome"] == "transient_failure"), "{attempts:?}");
    let reason = notifications[0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("gave up after 3 attempts") && reason.contains("authentication mechanism"), "{reason}");
}

#[tokio::test]
async fn a_5xx_reply_fails_the_message_at_once_with_its_cause() {
    let app = Harness::start().await;
    app.smtp().reply_to_data(&[(550, "5.1.1 Mailbox unavailable")]);
    let ada = app.users.add("ada@example.com", "Ada Lovelace");
    app.publish("orders", &events::confirmed(ada, events::order())).await;

    let notifications = app.settled_notifications(1).await;
    assert_eq!(notifications[0]["status"], "failed");
    let reason = notifications[0]["reason"].as_str().unwrap();
    assert!(reason.contains("Mailbox unavailable"), "{reason}");
    let attempts = app.attempts(notifications[0]["id"].as_str().unwrap()).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["outcome"], "permanent_failure");
    assert_eq!(attempts[0]["response_code"], 550);
    assert_eq!(app.smtp().data_attempts(), 1, "not retried");
}

#[tokio::test]
async fn transactional_email_goes_whatever_the_preferences_and_closed_or_unknown_accounts_get_nothing() {
    let app = Harness::start().await;
    let off = ChannelPreferences { transactional: false, marketing: false };
    let quiet = app.users.add_with(
        "quiet@example.com",
        "Quiet",
        Preferences { email: off, webhook: off },
        AccountStatus::Active,
    );
    let closed = app.users.add_with("closed@example.com", "Closed", Preferences::default(), AccountStatus::Deactivated);
    let unknown = Uuid::now_v7();
    for (user, order) in [(quiet, Uuid::now_v7()), (closed, Uuid::now_v7()), (unknown, Uuid::now_v7())] {
        app.publish("orders", &events::confirmed(user, order)).await;
    }

    let notifications = app.settled_notifications(3).await;
    let by_user = |user: Uuid| notifications.iter().find(|n| n["user_id"] == user.to_string()).unwrap().clone();
    assert_eq!(by_user(quiet)["status"], "sent");
    assert_eq!(by_user(closed)["status"], "skipped");
    assert!(by_user(closed)["reason"].as_str().unwrap().starts_with("account_deactivated"));
    assert_eq!(by_user(unknown)["status"], "skipped");
    assert!(by_user(unknown)["reason"].as_str().unwrap().starts_with("user_not_found"));
    app.settle().await;
    let received = app.smtp().received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].to, vec!["<quiet@example.com>".to_owned()]);
}

#[tokio::test]
async fn an_unavailable_users_module_delays_the_email_until_it_answers() {
    let app = Harness::start().await;
    let ada = app.users.add("ada@example.com", "Ada Lovelace");
    app.users.down.store(true, Ordering::SeqCst);
    app.publish("orders", &events::confirmed(ada, events::order())).await;

    // The handler fails and the bus retries: nothing is recorded meanwhile.
    eventually(Duration::from_secs(20), || async {
        let mut db = app.database.admin_connection().await?;
        let failing: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM notifications.bus_cursors WHERE source = 'orders' AND attempts > 0",
        )
        .fetch_one(&mut db)
        .await?;
        Ok((failing > 0).then_some(()))
    })
    .await
    .unwrap();
    assert!(app.notifications().await.is_empty());

    app.users.down.store(false, Ordering::SeqCst);
    app.await_mail(1).await;
    app.settled_notifications(1).await;
    assert_eq!(app.smtp().received().len(), 1);
}

#[tokio::test]
async fn low_stock_is_emailed_to_every_active_admin() {
    let app = Harness::start().await;
    app.users.add("admin-a@example.com", "Admin A");
    app.users.add("admin-b@example.com", "Admin B");
    app.users.add_with("admin-c@example.com", "Admin C", Preferences::default(), AccountStatus::Deactivated);
    app.users.add("customer@example.com", "Customer");
    app.publish("inventory", &events::low_stock()).await;

    let received = app.await_mail(2).await;
    app.settled_notifications(2).await;
    let mut to: Vec<String> = received.iter().flat_map(|r| r.to.clone()).collect();
    to.sort();
    assert_eq!(to, vec!["<admin-a@example.com>".to_owned(), "<admin-b@example.com>".to_owned()]);
    assert_eq!(received[0].parsed().subject(), Some("Low stock: MUG-001 (3 left)"));
}

#[tokio::test]
async fn the_file_mailbox_keeps_one_eml_file_per_message() {
    let mailbox = tempfile::tempdir().unwrap();
    let dir = mailbox.path().join("mailbox");
    let mut config = config(free_port());
    config.email.transport = notifications::MailTransport::Mailbox { dir: dir.clone() };
    let app = Harness::start_on(None, config).await;
    let ada = app.users.add("ada@example.com", "Ada Lovelace");
    app.publish("orders", &events::confirmed(ada, events::order())).await;
    app.publish("orders", &events::shipped(ada, events::order())).await;

    let notifications = app.settled_notifications(2).await;
    assert!(notifications.iter().all(|n| n["status"] == "sent"), "{notifications:?}");
    let mut subjects: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "eml"))
        .map(|path| {
            let bytes = std::fs::read(path).unwrap();
            let message = mail_parser::MessageParser::default().parse(&bytes).unwrap();
            message.subject().unwrap_or_default().to_owned()
        })
        .collect();
    subjects.sort();
    let order = events::order();
    assert_eq!(subjects, vec![format!("Order {order} confirmed"), format!("Order {order} shipped")]);
}

#[tokio::test]
async fn a_payment_event_that_arrives_before_its_order_waits_for_it() {
    let app = Harness::start().await;
    let ada = app.users.add("ada@example.com", "Ada Lovelace");
    let order = Uuid::now_v7();
    app.publish("payments", &payments_contract::fixtures::declined(order)).await;
    eventually(Duration::from_secs(20), || async {
        let mut db = app.database.admin_connection().await?;
        let error: Option<String> = sqlx::query_scalar(
            "SELECT max(last_error) FROM notifications.bus_cursors WHERE source = 'payments' AND attempts > 0",
        )
        .fetch_one(&mut db)
        .await?;
        Ok(error.filter(|e| e.contains("is not known yet")))
    })
    .await
    .unwrap();

    app.publish("orders", &events::placed(ada, order)).await;
    let received = app.await_mail(1).await;
    assert_eq!(received[0].parsed().subject(), Some(format!("Payment for order {order} failed").as_str()));
}

#[tokio::test]
async fn turning_notifications_on_in_a_running_shop_tells_no_one_about_past_events_but_knows_past_orders() {
    let ada = Uuid::now_v7();
    let old_order = Uuid::now_v7();
    let smtp = TestSmtp::start().await;
    let config = config(smtp.port);
    let app = Harness::start_after(Some(smtp), config, async |databases| {
        support::publish(databases, "users", &events::registered(ada)).await;
        support::publish(databases, "orders", &events::placed(ada, old_order)).await;
        support::publish(databases, "orders", &events::confirmed(ada, old_order)).await;
    })
    .await;
    app.users.add_with_id(ada, "ada@example.com", "Ada Lovelace");

    // A payment event about an order placed before notifications were on still finds its
    // customer: the order owners are learned from the beginning.
    app.publish("payments", &payments_contract::fixtures::declined(old_order)).await;
    let received = app.await_mail(1).await;
    assert_eq!(received[0].parsed().subject(), Some(format!("Payment for order {old_order} failed").as_str()));

    app.settle().await;
    let rows = app.notifications().await;
    assert_eq!(rows.len(), 1, "only the new event is told: {rows:#?}");
    assert_eq!(rows[0]["event_type"], "payments.payment_failed");
    assert_eq!(app.smtp().received().len(), 1);
}
