//! The role matrix, generated from the OpenAPI document: every operation the live app
//! documents is called as anonymous, as a customer who owns the records, as another customer
//! and as an admin, and each answer is checked against the operation's access class below. An
//! operation the document lists without an entry here fails the test (a new route must say
//! who may call it), and so does an entry for an operation that no longer exists.
//!
//! "Let through" means the gate opened: any answer but 401 and 403 (validation of the empty
//! body the test sends comes after). Path ids are real records of the owner where the class
//! depends on ownership, and random elsewhere, so admin calls change nothing. Every answer
//! must also be a status the document lists for that operation, in the envelope when it is an
//! error.

use std::collections::BTreeSet;
use std::time::Duration;

use bulkhead_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, Topology, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::shop::{customer, place};

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a token (public reads, sign-in, the gateway's signed webhook).
    Anyone,
    /// Anyone signed in; each sees their own.
    SignedIn,
    /// A record of one customer: its owner and admins; anyone else is told it does not exist.
    OwnerOrAdmin,
    /// Admins only.
    Admin,
}

/// Every documented operation and its access class.
pub const MATRIX: &[(&str, &str, Access)] = &[
    ("GET", "/.well-known/jwks.json", Access::Anyone),
    ("GET", "/health", Access::Anyone),
    ("GET", "/health/ready", Access::Anyone),
    ("GET", "/metrics", Access::Anyone),
    ("GET", "/api/v1/admin/bus/dead-letters", Access::Admin),
    ("POST", "/api/v1/admin/bus/dead-letters/{id}/replay", Access::Admin),
    ("GET", "/api/v1/admin/bus/subscriptions", Access::Admin),
    ("POST", "/api/v1/admin/bus/subscriptions/{name}/rewind", Access::Admin),
    ("GET", "/api/v1/admin/jobs/failed", Access::Admin),
    ("POST", "/api/v1/auth/email-verification", Access::Anyone),
    ("GET", "/api/v1/auth/keys", Access::Admin),
    ("POST", "/api/v1/auth/keys", Access::Admin),
    ("DELETE", "/api/v1/auth/keys/{kid}", Access::Admin),
    ("POST", "/api/v1/auth/login", Access::Anyone),
    ("POST", "/api/v1/auth/logout", Access::Anyone),
    ("POST", "/api/v1/auth/password-reset", Access::Anyone),
    ("POST", "/api/v1/auth/password-reset/confirm", Access::Anyone),
    ("POST", "/api/v1/auth/refresh", Access::Anyone),
    ("GET", "/api/v1/notifications", Access::SignedIn),
    ("GET", "/api/v1/notifications/{id}", Access::OwnerOrAdmin),
    ("POST", "/api/v1/notifications/{id}/retry", Access::Admin),
    ("GET", "/api/v1/orders", Access::SignedIn),
    ("POST", "/api/v1/orders", Access::SignedIn),
    ("GET", "/api/v1/orders/{id}", Access::OwnerOrAdmin),
    ("POST", "/api/v1/orders/{id}/cancel", Access::OwnerOrAdmin),
    ("POST", "/api/v1/orders/{id}/deliver", Access::Admin),
    ("GET", "/api/v1/orders/{id}/events", Access::OwnerOrAdmin),
    ("POST", "/api/v1/orders/{id}/ship", Access::Admin),
    ("GET", "/api/v1/payments", Access::SignedIn),
    ("GET", "/api/v1/payments/gateway", Access::Admin),
    ("POST", "/api/v1/payments/webhooks/sandbox", Access::Anyone),
    ("GET", "/api/v1/payments/{id}", Access::OwnerOrAdmin),
    ("POST", "/api/v1/payments/{id}/acknowledge", Access::Admin),
    ("POST", "/api/v1/payments/{id}/refunds", Access::Admin),
    ("GET", "/api/v1/products", Access::Anyone),
    ("POST", "/api/v1/products", Access::Admin),
    ("DELETE", "/api/v1/products/{id}", Access::Admin),
    ("GET", "/api/v1/products/{id}", Access::Anyone),
    ("PATCH", "/api/v1/products/{id}", Access::Admin),
    ("POST", "/api/v1/products/{id}/stock-adjustments", Access::Admin),
    ("GET", "/api/v1/products/{id}/stock-movements", Access::Admin),
    ("GET", "/api/v1/users", Access::Admin),
    ("POST", "/api/v1/users", Access::Anyone),
    ("GET", "/api/v1/users/me", Access::SignedIn),
    ("PATCH", "/api/v1/users/me", Access::SignedIn),
    ("POST", "/api/v1/users/me/deactivate", Access::SignedIn),
    ("POST", "/api/v1/users/me/email-verification", Access::SignedIn),
    ("POST", "/api/v1/users/me/password", Access::SignedIn),
    ("GET", "/api/v1/users/{id}", Access::Admin),
    ("POST", "/api/v1/users/{id}/deactivate", Access::Admin),
    ("POST", "/api/v1/users/{id}/reactivate", Access::Admin),
    ("PUT", "/api/v1/users/{id}/roles", Access::Admin),
    ("GET", "/api/v1/webhook-endpoints", Access::Admin),
    ("POST", "/api/v1/webhook-endpoints", Access::Admin),
    ("DELETE", "/api/v1/webhook-endpoints/{id}", Access::Admin),
    ("GET", "/api/v1/webhook-endpoints/{id}", Access::Admin),
    ("GET", "/api/v1/webhook-endpoints/{id}/deliveries", Access::Admin),
    ("GET", "/api/v1/webhook-endpoints/{id}/deliveries/{delivery_id}", Access::Admin),
    ("POST", "/api/v1/webhook-endpoints/{id}/deliveries/{delivery_id}/redeliver", Access::Admin),
    ("POST", "/api/v1/webhook-endpoints/{id}/enable", Access::Admin),
];

/// An operation of the document: method, path template, and the statuses it lists.
#[derive(Debug, Clone)]
pub struct Operation {
    pub method: Method,
    pub path: String,
    pub documented: BTreeSet<u16>,
}

/// Every operation of the live app's OpenAPI document.
pub async fn documented_operations(app: &TestApp) -> Vec<Operation> {
    let spec: Value = app.get("/api/openapi.json").await.json().await.unwrap();
    let mut operations = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else { continue };
            let Some(responses) = operation["responses"].as_object() else { continue };
            let documented = responses.keys().filter_map(|status| status.parse().ok()).collect();
            operations.push(Operation { method, path: path.clone(), documented });
        }
    }
    operations
}

/// The access class of an operation, if the matrix has it.
pub fn access_of(method: &Method, path: &str) -> Option<Access> {
    MATRIX.iter().find(|(m, p, _)| *m == method.as_str() && *p == path).map(|(_, _, access)| *access)
}

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Anonymous,
    Owner,
    OtherCustomer,
    Admin,
}

/// What the gate must answer `caller` for an operation of class `access`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expected {
    LetThrough,
    Unauthorized,
    Forbidden,
    /// Someone else's record: it does not exist for them.
    NotFound,
}

fn expected(access: Access, caller: Caller) -> Expected {
    match (access, caller) {
        (Access::Anyone, _) | (_, Caller::Admin) => Expected::LetThrough,
        (_, Caller::Anonymous) => Expected::Unauthorized,
        (Access::SignedIn, _) | (Access::OwnerOrAdmin, Caller::Owner) => Expected::LetThrough,
        (Access::OwnerOrAdmin, Caller::OtherCustomer) => Expected::NotFound,
        (Access::Admin, _) => Expected::Forbidden,
    }
}

fn meets(expected: Expected, status: StatusCode) -> bool {
    match expected {
        Expected::LetThrough => status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
        Expected::Unauthorized => status == StatusCode::UNAUTHORIZED,
        Expected::Forbidden => status == StatusCode::FORBIDDEN,
        Expected::NotFound => status == StatusCode::NOT_FOUND,
    }
}

/// The owner's records that ownership-dependent paths name.
struct Records {
    order: String,
    payment: String,
    notification: String,
    product: String,
}

/// The path with its parameters filled: the owner's records where ownership matters (and
/// public reads), random ids where only admins pass (so an admin's call finds nothing to
/// change).
fn concrete(path: &str, access: Access, records: &Records) -> String {
    let random = uuid::Uuid::now_v7().to_string();
    let id = match (access, path) {
        (Access::Admin, _) => random.as_str(),
        (_, p) if p.starts_with("/api/v1/orders/") => &records.order,
        (_, p) if p.starts_with("/api/v1/payments/") => &records.payment,
        (_, p) if p.starts_with("/api/v1/notifications/") => &records.notification,
        (_, p) if p.starts_with("/api/v1/products/") => &records.product,
        _ => random.as_str(),
    };
    path.replace("{id}", id)
        .replace("{delivery_id}", &random)
        .replace("{kid}", "no-such-key")
        .replace("{name}", "no.such")
}

async fn call(app: &TestApp, method: &Method, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app.client.request(method.clone(), app.url(path)).timeout(Duration::from_secs(10));
    if [Method::POST, Method::PUT, Method::PATCH].contains(method) {
        request = request.json(&json!({})).header("idempotency-key", uuid::Uuid::now_v7().to_string());
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn every_documented_operation_answers_each_role_as_its_access_class_says(topology: Topology) {
    let app = TestApp::spawn_on(topology, &["--rate-limit-per-second", "0"]).await;
    let operations = documented_operations(&app).await;

    let listed: BTreeSet<(String, String)> =
        operations.iter().map(|op| (op.method.to_string(), op.path.clone())).collect();
    let missing: Vec<_> = listed.iter().filter(|(m, p)| access_of(&m.parse().unwrap(), p).is_none()).collect();
    assert!(missing.is_empty(), "operations without an entry in the role matrix: {missing:?}");
    let stale: Vec<_> =
        MATRIX.iter().filter(|(m, p, _)| !listed.contains(&((*m).to_owned(), (*p).to_owned()))).collect();
    assert!(stale.is_empty(), "role matrix entries for operations that no longer exist: {stale:?}");

    let owner = customer(&app, "owner@example.com").await;
    let other = customer(&app, "other@example.com").await;
    let admin = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let records = owners_records(&app, &owner).await;

    let mut failures = Vec::new();
    for operation in &operations {
        let access = access_of(&operation.method, &operation.path).unwrap();
        let path = concrete(&operation.path, access, &records);
        for (caller, token) in [
            (Caller::Anonymous, None),
            (Caller::OtherCustomer, Some(other.as_str())),
            (Caller::Owner, Some(owner.as_str())),
            (Caller::Admin, Some(admin.as_str())),
        ] {
            let response = call(&app, &operation.method, &path, token).await;
            let status = response.status();
            let want = expected(access, caller);
            let what = format!("{} {path} as {caller:?} ({access:?})", operation.method);
            if !meets(want, status) {
                failures.push(format!("{what}: {status}, expected {want:?}"));
            }
            if !operation.documented.contains(&status.as_u16()) {
                failures.push(format!("{what}: {status} is not documented ({:?})", operation.documented));
            }
            if status.is_client_error() || status.is_server_error() {
                let body: Value = response.json().await.unwrap_or(Value::Null);
                if body["error"]["code"].as_str().is_none() {
                    failures.push(format!("{what}: {status} without the error envelope: {body}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} answers broke the matrix:\n{}", failures.len(), failures.join("\n"));
    app.stop().await.unwrap();
}

/// An order of the owner (with its payment) and their welcome notification.
async fn owners_records(app: &TestApp, owner: &str) -> Records {
    let order = place(app, owner, "matrix-1", "MUG-001", 1, "pm_card_visa").await;
    let order = order["id"].as_str().unwrap().to_owned();
    let payment = eventually(Duration::from_secs(20), || async {
        let page: Value = app.get_as(&format!("/api/v1/payments?order_id={order}"), owner).await.json().await?;
        Ok(page["data"][0]["id"].as_str().map(str::to_owned))
    })
    .await
    .expect("the order's payment never appeared");
    let notification = eventually(Duration::from_secs(20), || async {
        let page: Value = app.get_as("/api/v1/notifications", owner).await.json().await?;
        Ok(page["data"][0]["id"].as_str().map(str::to_owned))
    })
    .await
    .expect("the welcome notification never appeared");
    let products: Value = app.get("/api/v1/products?limit=1").await.json().await.unwrap();
    let product = products["data"][0]["id"].as_str().unwrap().to_owned();
    Records { order, payment, notification, product }
}

on_every_topology!(every_documented_operation_answers_each_role_as_its_access_class_says,);
