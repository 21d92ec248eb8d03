//! Notifications in the real application: what people and systems are told when something
//! happens, read where it arrives — the file mailbox the app writes email to, and a webhook
//! receiver listening on loopback that checks every signature.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use bulkhead_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, Topology, eventually};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::shop::{await_status, customer, place};

/// An email as the mailbox holds it.
#[derive(Debug, Clone)]
pub(crate) struct Email {
    pub(crate) to: String,
    pub(crate) subject: String,
    pub(crate) text: String,
}

/// Every message in the app's mailbox.
pub(crate) fn mailbox(app: &TestApp) -> Vec<Email> {
    let Ok(entries) = std::fs::read_dir(app.mailbox_dir()) else { return Vec::new() };
    let mut emails = Vec::new();
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|extension| extension != "eml") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        // A message still being written does not parse yet; the next look finds it whole.
        let Some(message) = mail_parser::MessageParser::default().parse(&bytes) else { continue };
        let to = message.to().and_then(|to| to.first()).and_then(|to| to.address()).unwrap_or_default().to_owned();
        emails.push(Email {
            to,
            subject: message.subject().unwrap_or_default().to_owned(),
            text: message.body_text(0).map(|text| text.into_owned()).unwrap_or_default(),
        });
    }
    emails
}

async fn emails_to(app: &TestApp, address: &str, count: usize) -> Vec<Email> {
    eventually(Duration::from_secs(30), || async {
        let emails: Vec<Email> = mailbox(app).into_iter().filter(|email| email.to == address).collect();
        Ok((emails.len() >= count).then_some(emails))
    })
    .await
    .unwrap_or_else(|_| panic!("{address} never got {count} emails: {:?}", mailbox(app)))
}

async fn registration_sends_a_welcome_email_whose_link_verifies_the_address(topology: Topology) {
    let app = TestApp::spawn_on(topology, &[]).await;
    let token = customer(&app, "newcomer@example.com").await;

    let welcome = emails_to(&app, "newcomer@example.com", 1).await.remove(0);
    assert!(welcome.subject.to_lowercase().contains("welcome"), "{welcome:?}");
    let link = welcome
        .text
        .split_whitespace()
        .find(|word| word.contains("token="))
        .unwrap_or_else(|| panic!("no link in {welcome:?}"));
    let secret = link.split("token=").nth(1).unwrap().trim_end_matches(['.', ',', ')']);

    let verification = json!({"token": secret});
    let response = app.post("/api/v1/auth/email-verification", None, &verification).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "the link verifies the address");
    let me: Value = app.get_as("/api/v1/users/me", &token).await.json().await.unwrap();
    assert_eq!(me["data"]["email_verified"], true, "{me}");
    let again = app.post("/api/v1/auth/email-verification", None, &verification).await;
    assert_eq!(again.status(), StatusCode::UNPROCESSABLE_ENTITY, "and works once");
    app.stop().await.unwrap();
}

/// A webhook receiver on loopback that keeps what it was sent.
#[derive(Debug, Clone, Default)]
struct Receiver {
    deliveries: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

impl Receiver {
    async fn start(&self) -> String {
        let deliveries = self.deliveries.clone();
        let router = axum::Router::new().route(
            "/hooks",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let deliveries = deliveries.clone();
                async move {
                    deliveries.lock().unwrap().push((headers, body));
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{address}/hooks")
    }

    fn received(&self) -> Vec<(HeaderMap, Bytes)> {
        self.deliveries.lock().unwrap().clone()
    }
}

/// Checks `Bulkhead-Signature: t=…,v1=…` as a receiver would: HMAC-SHA256 of `<t>.<body>`.
fn signature_matches(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let header = headers.get("bulkhead-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let parts: Vec<(&str, &str)> = header.split(',').filter_map(|part| part.split_once('=')).collect();
    let timestamp = parts.iter().find(|(k, _)| *k == "t").map(|(_, v)| *v).unwrap_or_default();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    let expected = hex::encode(mac.finalize().into_bytes());
    parts.iter().any(|(k, v)| *k == "v1" && *v == expected)
}

async fn a_confirmed_order_sends_one_confirmation_email_and_one_webhook_delivery(topology: Topology) {
    let app = TestApp::spawn_on(topology, &["--webhooks-allow-private-targets", "true"]).await;
    let receiver = Receiver::default();
    let url = receiver.start().await;
    let admin = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let endpoint: Value = app
        .client
        .post(app.url("/api/v1/webhook-endpoints"))
        .bearer_auth(&admin)
        .header("idempotency-key", "erp-hook")
        .json(&json!({"url": url, "description": "ERP", "event_types": ["orders.order_confirmed"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = endpoint["data"]["secret"].as_str().unwrap_or_else(|| panic!("no secret in {endpoint}")).to_owned();

    let token = customer(&app, "confirmed@example.com").await;
    let order = place(&app, &token, "notified-1", "MUG-001", 1, "pm_card_visa").await;
    let id = order["id"].as_str().unwrap();
    await_status(&app, &token, id, "confirmed").await;

    let delivered = eventually(Duration::from_secs(30), || async {
        let received = receiver.received();
        Ok((!received.is_empty()).then_some(received))
    })
    .await
    .expect("the webhook never arrived");
    let (headers, body) = &delivered[0];
    assert!(signature_matches(&secret, headers, body), "the signature verifies with the secret shown once");
    let event: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(event["type"], "orders.order_confirmed");
    assert_eq!(event["data"]["order_id"], id);

    let emails = emails_to(&app, "confirmed@example.com", 2).await;
    let confirmations: Vec<&Email> = emails.iter().filter(|email| email.text.contains(id)).collect();
    assert_eq!(confirmations.len(), 1, "{emails:?}");

    // Everything the confirmation caused has been delivered: exactly one of each, on record.
    let sent = eventually(Duration::from_secs(30), || async {
        let page: Value = app
            .get_as("/api/v1/notifications?event_type=orders.order_confirmed&limit=100", &admin)
            .await
            .json()
            .await?;
        let notes = page["data"].as_array().cloned().unwrap_or_default();
        Ok((notes.len() == 2 && notes.iter().all(|n| n["status"] == "sent")).then_some(notes))
    })
    .await
    .expect("the confirmation was not sent exactly once per channel");
    let mut channels: Vec<&str> = sent.iter().map(|n| n["channel"].as_str().unwrap()).collect();
    channels.sort_unstable();
    assert_eq!(channels, ["email", "webhook"]);
    assert_eq!(receiver.received().len(), 1);
    let confirmations = mailbox(&app).into_iter().filter(|email| email.text.contains(id)).count();
    assert_eq!(confirmations, 1);
    app.stop().await.unwrap();
}

on_every_topology!(
    registration_sends_a_welcome_email_whose_link_verifies_the_address,
    a_confirmed_order_sends_one_confirmation_email_and_one_webhook_delivery,
);
