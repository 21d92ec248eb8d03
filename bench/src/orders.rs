//! `orders`: orders placed against the real application, each followed on its Server-Sent
//! Events through the whole saga — orders → bus → inventory reserves → bus → orders
//! (`awaiting_payment`) → bus → payments authorizes and captures at the sandbox gateway in
//! jobs → bus → orders (`confirmed`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::app::{self, ADMIN_EMAIL, ADMIN_PASSWORD, Api, BenchApp, PASSWORD};
use crate::measure::{Percentiles, at_concurrency, per_second, round2};

const CUSTOMER: &str = "bench-customer@example.com";

/// Starts the app, measures, stops it; returns the figures.
///
/// # Errors
/// The app not starting, or a set-up step or placement that fails. Orders that do not reach
/// `confirmed` are counted, not errors.
pub(crate) async fn run(orders: u64, concurrency: u64) -> anyhow::Result<Value> {
    let app = BenchApp::start().await?;
    let outcome = measure(&app.api, orders, concurrency).await;
    app.stop().await?;
    outcome
}

pub(crate) async fn measure(api: &Api, orders: u64, concurrency: u64) -> anyhow::Result<Value> {
    api.register(CUSTOMER).await?;
    let token: Arc<str> = api.sign_in(CUSTOMER, PASSWORD).await?.into();
    let admin = api.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    let sku = stocked_product(api, &admin, orders).await?;

    let client = api.client.clone();
    let orders_url: Arc<str> = api.url("/api/v1/orders").into();
    let body = json!({
        "lines": [{ "sku": sku, "quantity": 1 }],
        "shipping_address": {
            "name": "B", "line1": "1 High St", "city": "Leeds", "postal_code": "LS1 1AA", "country": "GB"
        },
        "payment_method": "pm_card_visa",
    });
    let started = Instant::now();
    let (placed, elapsed) = at_concurrency(orders, concurrency, move |_| {
        let request = client
            .post(&*orders_url)
            .bearer_auth(&token)
            .header("idempotency-key", Uuid::new_v4().to_string())
            .json(&body);
        let (client, orders_url, token) = (client.clone(), orders_url.clone(), token.clone());
        async move {
            let started = Instant::now();
            let response = request.send().await.context("placing an order")?;
            let order = app::expect(response, StatusCode::ACCEPTED, "placing an order").await?;
            let accepted = Accepted { at: Instant::now(), wall: Utc::now() };
            let id = order["data"]["id"].as_str().context("the placed order has no id")?;
            let events = format!("{orders_url}/{id}/events");
            let follower = tokio::spawn(follow(client, events, token, accepted));
            anyhow::Ok((accepted.at - started, follower))
        }
    })
    .await?;

    let mut placements = Vec::new();
    let mut reserved = Vec::new();
    let mut sagas = Vec::new();
    let mut seen = Vec::new();
    let mut failures = Vec::new();
    for (placement, follower) in placed {
        placements.push(placement);
        match follower.await.context("following an order")? {
            Ok(reached) => {
                reserved.push(reached.reserved);
                sagas.push(reached.confirmed);
                seen.push(reached.seen);
            }
            Err(error) => failures.push(format!("{error:#}")),
        }
    }
    // Every follower has ended: the last confirmation has been seen.
    let all_confirmed = started.elapsed();
    let placement = Percentiles::of(&placements)?;
    let reserved = Percentiles::of(&reserved).with_context(|| format!("no order was confirmed: {failures:?}"))?;
    let saga = Percentiles::of(&sagas)?;
    let seen = Percentiles::of(&seen)?;

    let mut notes = vec![
        "reserve latency: from the 202 reaching the client to `awaiting_payment` as the app recorded it \
         (its timeline entry's `at`, the same process's clock; 0 if it came first)"
            .to_owned(),
        "saga latency: from the 202 to `confirmed` as the app recorded it: the reservation, then the payment \
         (two sandbox gateway calls in jobs, 50 ms of simulated latency each) and its capture event"
            .to_owned(),
        "saga seen: from the 202 to the order's event stream delivering `confirmed`; the stream \
         looks for news every 500 ms, so this is the saga latency plus up to half a second"
            .to_owned(),
        "every order is followed on its own `GET /api/v1/orders/{id}/events` stream while placement goes on, \
         as customers watching their orders would; the client shares the process and the cores with the app"
            .to_owned(),
    ];
    if let Some(first) = failures.first() {
        notes.push(format!("{} orders were not confirmed; the first: {first}", failures.len()));
    }
    Ok(json!({
        "placements_per_sec": per_second(placements.len(), elapsed),
        "confirmed_per_sec": per_second(sagas.len(), all_confirmed),
        "placement_p50_ms": placement.p50,
        "placement_p99_ms": placement.p99,
        "reserve_latency_p50_ms": reserved.p50,
        "reserve_latency_p99_ms": reserved.p99,
        "saga_latency_p50_ms": saga.p50,
        "saga_latency_p99_ms": saga.p99,
        "saga_seen_p50_ms": seen.p50,
        "saga_seen_p99_ms": seen.p99,
        "orders": placements.len(),
        "orders_confirmed": sagas.len(),
        "concurrency": concurrency,
        "sku": sku,
        "placement_secs": round2(elapsed.as_secs_f64()),
        "cores": std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        "notes": notes,
    }))
}

/// The demo product with the most stock, after receiving `orders` more units of it as the
/// first admin, so that every order can be reserved.
async fn stocked_product(api: &Api, admin: &str, orders: u64) -> anyhow::Result<String> {
    let response = api.client.get(api.url("/api/v1/products?limit=100")).bearer_auth(admin).send().await?;
    let page = app::expect(response, StatusCode::OK, "listing products").await?;
    let product = page["data"]
        .as_array()
        .context("the product list has no data")?
        .iter()
        .filter(|p| p["active"] == true)
        .max_by_key(|p| p["stock"]["available"].as_i64().unwrap_or_default())
        .context("the catalogue has no active product (is BULKHEAD_DEMO_DATA false?)")?;
    let id = product["id"].as_str().context("a product without an id")?;
    let sku = product["sku"].as_str().context("a product without a sku")?;
    let response = api
        .client
        .post(api.url(&format!("/api/v1/products/{id}/stock-adjustments")))
        .bearer_auth(admin)
        .header("idempotency-key", Uuid::new_v4().to_string())
        .json(&json!({ "kind": "receive", "quantity": orders, "reason": "bench" }))
        .send()
        .await?;
    app::expect(response, StatusCode::CREATED, "receiving stock").await?;
    Ok(sku.to_owned())
}

/// When the client had the 202: a monotonic instant for what it saw, and the wall clock to
/// compare with what the app recorded.
#[derive(Debug, Clone, Copy)]
struct Accepted {
    at: Instant,
    wall: DateTime<Utc>,
}

/// How long after the 202 the order reached `awaiting_payment` and `confirmed`.
#[derive(Debug)]
struct Reached {
    /// Stock reserved, as the app recorded it.
    reserved: Duration,
    /// Paid, as the app recorded it.
    confirmed: Duration,
    /// Paid, as the event stream delivered it.
    seen: Duration,
}

/// One `data:` of the order's event stream.
#[derive(Debug, Deserialize)]
struct TimelineEntry {
    at: DateTime<Utc>,
    status: String,
    reason: Option<String>,
}

/// Reads the order's event stream until `confirmed`.
async fn follow(client: reqwest::Client, url: String, token: Arc<str>, accepted: Accepted) -> anyhow::Result<Reached> {
    let response = client.get(&url).bearer_auth(&token).send().await.context("opening the order's events")?;
    anyhow::ensure!(response.status() == StatusCode::OK, "opening the order's events: {}", response.status());
    let mut stream = response.bytes_stream();
    let mut buffer = Vec::new();
    let mut reserved = None;
    let since_accepted = |at: DateTime<Utc>| (at - accepted.wall).to_std().unwrap_or(Duration::ZERO);
    while let Some(chunk) = stream.next().await {
        buffer.extend_from_slice(&chunk.context("reading the order's events")?);
        // The app ends every event with a blank line, `\n\n`.
        while let Some(end) = buffer.windows(2).position(|pair| pair == b"\n\n") {
            let event: Vec<u8> = buffer.drain(..end + 2).collect();
            for entry in timeline_entries(&event)? {
                match entry.status.as_str() {
                    "awaiting_payment" => reserved = Some(since_accepted(entry.at)),
                    "confirmed" => {
                        let reserved = reserved.context("confirmed without awaiting payment first")?;
                        let confirmed = since_accepted(entry.at);
                        return Ok(Reached { reserved, confirmed, seen: accepted.at.elapsed() });
                    }
                    "pending" => {}
                    other => anyhow::bail!(
                        "the order became {other} ({}) instead of confirmed",
                        entry.reason.as_deref().unwrap_or("no reason")
                    ),
                }
            }
        }
    }
    anyhow::bail!("the order's event stream ended before confirmed")
}

fn timeline_entries(event: &[u8]) -> anyhow::Result<Vec<TimelineEntry>> {
    let event = std::str::from_utf8(event).context("an event that is not UTF-8")?;
    event
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|data| serde_json::from_str(data.trim_start()).context("an event that is not a timeline entry"))
        .collect()
}
