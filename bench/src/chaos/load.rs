//! The shoppers of a chaos run: customers placing orders with mixed cards on whichever
//! replica is up, retrying with the same `Idempotency-Key` through kills and restarts (so each
//! order is placed once), and cancelling some orders once they are paid (so refunds happen).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use super::cluster::Fleet;
use crate::app::{ADMIN_EMAIL, ADMIN_PASSWORD, PASSWORD};

/// How long a client keeps retrying one request through kills and restarts.
const PATIENCE: Duration = Duration::from_secs(180);

/// The payment method tokens the shoppers use, with their weights: approved, declined,
/// asynchronous (settled by webhook, or declined by it), slow, and failing once.
const CARDS: [(&str, u32); 8] = [
    ("pm_card_visa", 30),
    ("pm_card_mastercard", 10),
    ("pm_card_declined", 8),
    ("pm_card_insufficient_funds", 4),
    ("pm_card_async", 16),
    ("pm_card_async_declined", 4),
    ("pm_card_slow", 12),
    ("pm_card_error_once", 16),
];

/// Cards whose orders may be paid, so a shopper may cancel them afterwards.
const PAYING: [&str; 5] = ["pm_card_visa", "pm_card_mastercard", "pm_card_async", "pm_card_slow", "pm_card_error_once"];

/// One in this many paid orders is cancelled by its customer (a refund).
const CANCEL_ONE_IN: u32 = 8;

/// A client of the fleet: each request goes to a replica that is up, and is retried on
/// transport errors, 5xx and "still in progress" until it gets an answer or `PATIENCE` runs out.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub(crate) fleet: Fleet,
    pub(crate) http: reqwest::Client,
}

impl Client {
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let deadline = Instant::now() + PATIENCE;
        let mut last = String::new();
        while Instant::now() < deadline {
            let base = self.fleet.pick();
            let mut request = self.http.request(method.clone(), format!("{base}{path}"));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            if let Some(key) = key {
                request = request.header("idempotency-key", key);
            }
            match request.send().await {
                Err(error) => last = format!("{base}: {error}"),
                Ok(response) => {
                    let status = response.status();
                    let wait = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    let in_progress =
                        status == StatusCode::CONFLICT && body["error"]["code"] == "idempotency_request_in_progress";
                    if !(status.is_server_error() || in_progress || status == StatusCode::TOO_MANY_REQUESTS) {
                        return Ok((status, body));
                    }
                    last = format!("{base}: {status} {body}");
                    if let Some(wait) = wait {
                        tokio::time::sleep(wait.min(Duration::from_secs(2))).await;
                        continue;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        anyhow::bail!("{method} {path}: no answer within {PATIENCE:?} (last: {last})")
    }
}

/// What the shoppers did.
#[derive(Debug, Default)]
pub(crate) struct LoadReport {
    pub(crate) attempted: u64,
    /// Accepted orders (202) and the card each was paid with.
    pub(crate) accepted: Vec<(Uuid, &'static str)>,
    /// Refusals by error code (e.g. none expected: every order is valid).
    pub(crate) refused: BTreeMap<String, u64>,
    /// Orders whose placement got no answer in time: unknown to the client.
    pub(crate) gave_up: u64,
    pub(crate) cancellations_asked: u64,
    pub(crate) cancellations_done: u64,
    pub(crate) duration: Duration,
}

/// The shop as the shoppers know it.
#[derive(Debug, Clone)]
pub(crate) struct Shop {
    client: Client,
    customers: Arc<Vec<String>>,
    skus: Arc<Vec<String>>,
}

impl Shop {
    /// Creates the products (ample stock) and the customers, signed in.
    pub(crate) async fn open(client: Client, customers: usize, products: usize) -> anyhow::Result<Self> {
        let admin = sign_in(&client, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
        let mut skus = Vec::new();
        for n in 0..products {
            let sku = format!("CHAOS-{n:03}");
            let body = json!({
                "sku": sku, "name": format!("Chaos item {n}"), "price": { "amount": 500 + 250 * i64::try_from(n)?, "currency": "EUR" },
                "initial_stock": 1_000_000
            });
            let (status, answer) =
                client.call(Method::POST, "/api/v1/products", Some(&admin), Some(&body), Some(&sku)).await?;
            anyhow::ensure!(status == StatusCode::CREATED, "creating {sku}: {status} {answer}");
            skus.push(sku);
        }
        let mut tokens = Vec::new();
        for n in 0..customers {
            let email = format!("shopper-{n}@chaos.example");
            let body = json!({ "email": email, "password": PASSWORD, "display_name": format!("Shopper {n}") });
            let (status, answer) = client.call(Method::POST, "/api/v1/users", None, Some(&body), None).await?;
            anyhow::ensure!(
                status == StatusCode::CREATED || status == StatusCode::CONFLICT,
                "registering {email}: {status} {answer}"
            );
            tokens.push(sign_in(&client, &email, PASSWORD).await?);
        }
        Ok(Self { client, customers: Arc::new(tokens), skus: Arc::new(skus) })
    }

    /// Places `orders` orders, `rate` per second at most and `concurrency` at once; counts
    /// accepted orders into `progress` as they come.
    pub(crate) async fn shop(
        &self,
        orders: u64,
        rate: f64,
        concurrency: usize,
        seed: u64,
        progress: Arc<AtomicU64>,
    ) -> anyhow::Result<LoadReport> {
        let started = Instant::now();
        let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let mut rng = StdRng::seed_from_u64(seed);
        let mut placing = tokio::task::JoinSet::new();
        for index in 0..orders {
            let due = started + Duration::from_secs_f64(index as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
            let permit = permits.clone().acquire_owned().await?;
            let order = self.draw(&mut rng);
            let (shop, progress) = (self.clone(), progress.clone());
            placing.spawn(async move {
                let outcome = shop.place(order).await;
                if matches!(outcome, Placement::Accepted { .. }) {
                    progress.fetch_add(1, Ordering::Relaxed);
                }
                drop(permit);
                outcome
            });
        }
        let mut report = LoadReport { attempted: orders, ..LoadReport::default() };
        let mut cancellations = tokio::task::JoinSet::new();
        while let Some(outcome) = placing.join_next().await {
            match outcome? {
                Placement::Accepted { id, card, customer, cancel } => {
                    report.accepted.push((id, card));
                    if cancel {
                        report.cancellations_asked += 1;
                        let shop = self.clone();
                        cancellations.spawn(async move { shop.cancel_once_paid(id, customer).await });
                    }
                }
                Placement::Refused(code) => *report.refused.entry(code).or_default() += 1,
                Placement::GaveUp(error) => {
                    tracing::warn!("an order got no answer: {error:#}");
                    report.gave_up += 1;
                }
            }
        }
        while let Some(cancelled) = cancellations.join_next().await {
            if cancelled?.context("cancelling a paid order")? {
                report.cancellations_done += 1;
            }
        }
        report.duration = started.elapsed();
        Ok(report)
    }

    fn draw(&self, rng: &mut StdRng) -> Order {
        let total: u32 = CARDS.iter().map(|(_, weight)| weight).sum();
        let mut pick = rng.random_range(0..total);
        let card = CARDS
            .iter()
            .find(|(_, weight)| {
                let hit = pick < *weight;
                pick = pick.saturating_sub(*weight);
                hit
            })
            .map_or(CARDS[0].0, |(card, _)| card);
        let customer = rng.random_range(0..self.customers.len());
        let first = rng.random_range(0..self.skus.len());
        let count = rng.random_range(1..=3usize.min(self.skus.len()));
        let lines = (0..count)
            .map(|n| (self.skus[(first + n) % self.skus.len()].clone(), rng.random_range(1..=3u32)))
            .collect();
        let cancel = PAYING.contains(&card) && rng.random_range(0..CANCEL_ONE_IN) == 0;
        Order { card, customer, lines, cancel }
    }

    async fn place(&self, order: Order) -> Placement {
        let key = Uuid::now_v7().to_string();
        let lines: Vec<Value> =
            order.lines.iter().map(|(sku, quantity)| json!({ "sku": sku, "quantity": quantity })).collect();
        let body = json!({
            "lines": lines,
            "shipping_address": { "name": "Chaos", "line1": "1 High St", "city": "Leeds", "postal_code": "LS1 1AA", "country": "GB" },
            "payment_method": order.card,
        });
        let token = &self.customers[order.customer];
        match self.client.call(Method::POST, "/api/v1/orders", Some(token), Some(&body), Some(&key)).await {
            Ok((StatusCode::ACCEPTED, answer)) => match answer["data"]["id"].as_str().and_then(|id| id.parse().ok()) {
                Some(id) => {
                    Placement::Accepted { id, card: order.card, customer: order.customer, cancel: order.cancel }
                }
                None => Placement::Refused(format!("202 without an id: {answer}")),
            },
            Ok((status, answer)) => {
                Placement::Refused(format!("{status} {}", answer["error"]["code"].as_str().unwrap_or_default()))
            }
            Err(error) => Placement::GaveUp(error),
        }
    }

    /// Waits for the order to be paid (`confirmed`), then cancels it; false when it ended
    /// otherwise (declined, say) or never got there.
    async fn cancel_once_paid(&self, id: Uuid, customer: usize) -> anyhow::Result<bool> {
        let token = &self.customers[customer];
        let path = format!("/api/v1/orders/{id}");
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            let (_, order) = self.client.call(Method::GET, &path, Some(token), None, None).await?;
            match order["data"]["status"].as_str() {
                Some("confirmed") => {
                    let key = Uuid::now_v7().to_string();
                    let cancel = format!("{path}/cancel");
                    let (status, answer) =
                        self.client.call(Method::POST, &cancel, Some(token), Some(&json!({})), Some(&key)).await?;
                    if status == StatusCode::OK {
                        return Ok(true);
                    }
                    // A replica killed after the cancellation committed, before its answer
                    // was stored: the retry finds the order already cancelled.
                    let (_, now) = self.client.call(Method::GET, &path, Some(token), None, None).await?;
                    anyhow::ensure!(
                        status == StatusCode::CONFLICT && now["data"]["status"] == "cancelled",
                        "cancelling {id}: {status} {answer}"
                    );
                    return Ok(true);
                }
                Some("pending" | "awaiting_payment") => tokio::time::sleep(Duration::from_secs(1)).await,
                _ => return Ok(false),
            }
        }
        Ok(false)
    }
}

#[derive(Debug)]
struct Order {
    card: &'static str,
    customer: usize,
    lines: Vec<(String, u32)>,
    cancel: bool,
}

#[derive(Debug)]
enum Placement {
    Accepted { id: Uuid, card: &'static str, customer: usize, cancel: bool },
    Refused(String),
    GaveUp(anyhow::Error),
}

async fn sign_in(client: &Client, email: &str, password: &str) -> anyhow::Result<String> {
    let body = json!({ "email": email, "password": password });
    let (status, answer) = client.call(Method::POST, "/api/v1/auth/login", None, Some(&body), None).await?;
    anyhow::ensure!(status == StatusCode::OK, "signing in as {email}: {status} {answer}");
    answer["data"]["access_token"].as_str().map(str::to_owned).context("no access token in the sign-in answer")
}
