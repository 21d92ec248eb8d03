//! `users`: sign-ins against the real application. Each one verifies an argon2id hash, which
//! is the cost that matters; a registration hashes once, so their median times one hash.

use std::time::Instant;

use anyhow::Context;
use reqwest::StatusCode;
use serde_json::json;

use crate::app::{self, BenchApp, PASSWORD};
use crate::measure::{Percentiles, at_concurrency, per_second, round2};

/// Registrations timed one after another for the hash time.
const REGISTRATIONS: u64 = 20;

/// Starts the app, measures, stops it; returns the figures.
///
/// # Errors
/// The app not starting, or a registration or sign-in that fails.
pub(crate) async fn run(requests: u64, concurrency: u64) -> anyhow::Result<serde_json::Value> {
    let app = BenchApp::start().await?;
    let outcome = measure(&app, requests, concurrency).await;
    app.stop().await?;
    outcome
}

async fn measure(app: &BenchApp, requests: u64, concurrency: u64) -> anyhow::Result<serde_json::Value> {
    // One account per worker: an attempt counts toward the account's sign-in throttle until
    // its password is verified, so more than 5 in flight for one account answer 429.
    let accounts = REGISTRATIONS.max(concurrency);
    let mut registrations = Vec::new();
    for account in 0..accounts {
        let started = Instant::now();
        app.api.register(&email(account)).await?;
        registrations.push(started.elapsed());
    }
    let hash = Percentiles::of(&registrations)?;

    // Checks the credentials and warms the connections before anything is timed.
    app.api.sign_in(&email(0), PASSWORD).await?;
    let client = app.api.client.clone();
    let url = app.api.url("/api/v1/auth/login");
    let (latencies, elapsed) = at_concurrency(requests, concurrency, move |worker| {
        let request = client.post(&url).json(&json!({ "email": email(worker), "password": PASSWORD }));
        async move {
            let started = Instant::now();
            let response = request.send().await.context("signing in")?;
            app::expect(response, StatusCode::OK, "signing in").await?;
            anyhow::Ok(started.elapsed())
        }
    })
    .await?;
    let logins = Percentiles::of(&latencies)?;

    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    Ok(json!({
        "logins_per_sec": per_second(latencies.len(), elapsed),
        "login_p50_ms": logins.p50,
        "login_p99_ms": logins.p99,
        "argon2id_hash_p50_ms": hash.p50,
        "logins": latencies.len(),
        "concurrency": concurrency,
        "registrations_timed": accounts,
        "cores": cores,
        "elapsed_secs": round2(elapsed.as_secs_f64()),
        "notes": [
            format!(
                "argon2id (19 MiB, 2 passes, 1 lane) runs at most 2 per core at once by design ({} here): \
                 sign-ins beyond that queue, so logins/s is bounded by cores / hash time, not by concurrency",
                2 * cores
            ),
            format!(
                "argon2id_hash_p50_ms is the median of {accounts} registrations made one at a time: \
                 one hash plus one INSERT each, so slightly more than a hash"
            ),
            "each worker signs in as its own account: an attempt counts toward the throttle until it is \
             verified, so more than 5 concurrent sign-ins of one account (20 from one address) answer 429",
            "the client runs in the same process as the app and shares its cores; the per-client rate limit is off",
        ],
    }))
}

fn email(account: u64) -> String {
    format!("bench-{account}@example.com")
}
