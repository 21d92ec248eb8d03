//! `chaos`: the crash harness. Two replicas of the real `bulkhead` binary share one embedded
//! PostgreSQL; shoppers place orders with mixed cards on whichever replica is up, and cancel
//! some once paid. Meanwhile a random replica is killed with SIGKILL every few seconds (and
//! started again), PostgreSQL is restarted once, and the sandbox gateway and the SMTP server
//! are taken down for a while. Then the harness waits for quiet and checks the invariants
//! (`chaos/invariants.rs`), printing the figures. It exits non-zero on any violation.
//!
//! Everything listens on loopback only, and the run stops by itself.

mod cluster;
mod invariants;
mod load;
mod smtp;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::Rng;
use serde_json::{Value, json};

use self::cluster::{Database, Fleet, Replica, ReplicaSettings, gateway_outage};
use self::load::{Client, Shop};
use self::smtp::SmtpSink;

/// How a run goes.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) orders: u64,
    /// Orders placed per second at most.
    pub(crate) rate: f64,
    pub(crate) concurrency: usize,
    /// A replica is killed every `kill_every.0` to `kill_every.1` seconds.
    pub(crate) kill_every: (f64, f64),
    /// How long the gateway, and then the SMTP server, stay down.
    pub(crate) outage: Duration,
    /// The `bulkhead` binary (default: next to this one, built if missing).
    pub(crate) bin: Option<PathBuf>,
    pub(crate) seed: u64,
    /// Longest wait for quiet after the load.
    pub(crate) quiet_timeout: Duration,
}

/// What the chaos did, for the report.
#[derive(Debug, Default)]
struct Mayhem {
    kills: AtomicU64,
    restarts: AtomicU64,
    database_restarts: AtomicU64,
    database_down_ms: AtomicU64,
    gateway_down_ms: AtomicU64,
    smtp_down_ms: AtomicU64,
}

/// Runs the harness; returns the report (its `violations` is 0 when every invariant held).
///
/// # Errors
/// A set-up that fails (no PostgreSQL, no binary), or the system not getting quiet.
pub(crate) async fn run(options: Options) -> anyhow::Result<Value> {
    let bin = binary(options.bin.clone())?;
    // Beside the binaries (under target/), not in the shared /tmp.
    let runs = bin.parent().context("the binary has no folder")?.join("chaos");
    std::fs::create_dir_all(&runs).with_context(|| format!("creating {}", runs.display()))?;
    let work = tempfile::Builder::new().prefix("run-").tempdir_in(&runs).context("creating the work directory")?;
    let outcome = run_in(options, bin, work.path()).await;
    // The replicas' and PostgreSQL's logs are kept when something broke, to read why.
    if !outcome.as_ref().is_ok_and(|report| report["violations"] == 0) {
        let kept = work.keep();
        eprintln!("chaos: the run's logs and database are kept in {}", kept.display());
    }
    outcome
}

async fn run_in(options: Options, bin: PathBuf, work: &std::path::Path) -> anyhow::Result<Value> {
    let mut database = Database::start(&work.join("postgres")).await?;
    let mut smtp = SmtpSink::start().await?;
    let settings = ReplicaSettings {
        bin,
        database_url: database.url.clone(),
        smtp_port: smtp.port,
        keys_dir: work.join("keys"),
        work_dir: work.to_owned(),
    };
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .pool_idle_timeout(Duration::from_secs(2))
        .build()?;
    let mut replicas = vec![Replica::new("replica-a", settings.clone())?, Replica::new("replica-b", settings)?];
    // One after the other: the first creates the schemas, the admin and the signing key.
    for replica in &mut replicas {
        replica.start(&http, Duration::from_secs(120)).await?;
    }
    let fleet = Fleet::new(replicas);
    let client = Client { fleet: fleet.clone(), http: http.clone() };
    let shop = Shop::open(client, 24, 8).await?;

    let mayhem = Arc::new(Mayhem::default());
    let progress = Arc::new(AtomicU64::new(0));
    let shopping = Arc::new(AtomicBool::new(true));
    let load = {
        let (shop, progress, options) = (shop.clone(), progress.clone(), options.clone());
        tokio::spawn(async move {
            shop.shop(options.orders, options.rate, options.concurrency, options.seed, progress).await
        })
    };
    let chaos = chaos(&fleet, &http, &mut database, &mut smtp, &options, &mayhem, &progress, &shopping, load).await;
    let load = match chaos {
        Ok(load) => load,
        Err(error) => {
            stop_all(&fleet, database).await;
            return Err(error);
        }
    };
    shopping.store(false, Ordering::Relaxed);

    // Every replica up again, the gateway and the mail server back: then wait for quiet.
    for replica in fleet.replicas.iter() {
        let mut replica = replica.lock().await;
        if !replica.is_running() {
            replica.start(&http, Duration::from_secs(120)).await?;
            fleet.mark(&replica.base_url(), true);
            mayhem.restarts.fetch_add(1, Ordering::Relaxed);
        }
    }
    let quiet_started = Instant::now();
    let quiet = wait_for_quiet(&database.admin, options.quiet_timeout).await;
    let time_to_quiet = quiet_started.elapsed();
    let outcome = async {
        let still_moving = quiet?;
        let accepted: Vec<uuid::Uuid> = load.accepted.iter().map(|(id, _)| *id).collect();
        let mail = smtp.received();
        let checks = invariants::check(&database.admin, &accepted, &mail).await?;
        let figures = invariants::figures(&database.admin, &mail).await?;
        anyhow::Ok((still_moving, checks, figures))
    }
    .await;
    stop_all(&fleet, database).await;
    let (still_moving, checks, figures) = outcome?;

    let violations: i64 = checks.iter().map(|c| c.violations).sum::<i64>() + i64::from(!still_moving.is_empty());
    let mut cards = std::collections::BTreeMap::<&str, u64>::new();
    for (_, card) in &load.accepted {
        *cards.entry(card).or_default() += 1;
    }
    Ok(json!({
        "orders_attempted": load.attempted,
        "orders_accepted": load.accepted.len(),
        "orders_refused": load.refused,
        "orders_without_answer": load.gave_up,
        "orders_by_card": cards,
        "cancellations_of_paid_orders": load.cancellations_done,
        "load_seconds": round1(load.duration.as_secs_f64()),
        "replica_kills": mayhem.kills.load(Ordering::Relaxed),
        "replica_restarts": mayhem.restarts.load(Ordering::Relaxed),
        "postgres_restarts": mayhem.database_restarts.load(Ordering::Relaxed),
        "postgres_down_seconds": round1(ms(&mayhem.database_down_ms)),
        "gateway_down_seconds": round1(ms(&mayhem.gateway_down_ms)),
        "smtp_down_seconds": round1(ms(&mayhem.smtp_down_ms)),
        "time_to_quiet_seconds": round1(time_to_quiet.as_secs_f64()),
        "still_moving_at_timeout": still_moving,
        "end_state": figures,
        "invariants": checks,
        "violations": violations,
    }))
}

fn ms(counter: &AtomicU64) -> f64 {
    Duration::from_millis(counter.load(Ordering::Relaxed)).as_secs_f64()
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// Kills and restarts replicas at random until the load is done, and once each restarts
/// PostgreSQL, and takes the gateway and then the SMTP server down, at set points of the
/// load. Returns what the load did.
#[expect(clippy::too_many_arguments, reason = "the run's parts, each borrowed for its own event")]
async fn chaos(
    fleet: &Fleet,
    http: &reqwest::Client,
    database: &mut Database,
    smtp: &mut SmtpSink,
    options: &Options,
    mayhem: &Arc<Mayhem>,
    progress: &Arc<AtomicU64>,
    shopping: &Arc<AtomicBool>,
    mut load: tokio::task::JoinHandle<anyhow::Result<load::LoadReport>>,
) -> anyhow::Result<load::LoadReport> {
    let share = |fraction: f64| (options.orders as f64 * fraction) as u64;
    let (mut restarted_database, mut gateway_down, mut smtp_down) = (false, None::<Instant>, None::<Instant>);
    let (mut gateway_done, mut smtp_done) = (false, false);
    let mut next_kill = Instant::now() + kill_interval(options);
    let mut restarts = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            finished = &mut load => {
                restarts.join_all().await.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
                if gateway_down.is_some() {
                    gateway_outage(&database.admin, None).await?;
                }
                if smtp_down.is_some() {
                    smtp.up().await?;
                }
                return finished.context("the shoppers' task")?;
            }
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        let accepted = progress.load(Ordering::Relaxed);
        if Instant::now() >= next_kill && shopping.load(Ordering::Relaxed) {
            next_kill = Instant::now() + kill_interval(options);
            // Keep one replica serving most of the time: kill only when both are up.
            if fleet.up_count() == fleet.replicas.len() {
                let victim = rand::rng().random_range(0..fleet.replicas.len());
                let (fleet, http, mayhem) = (fleet.clone(), http.clone(), mayhem.clone());
                let down_for = Duration::from_millis(rand::rng().random_range(300..1500));
                restarts.spawn(async move {
                    let mut replica = fleet.replicas[victim].lock().await;
                    fleet.mark(&replica.base_url(), false);
                    replica.kill().await?;
                    mayhem.kills.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(down_for).await;
                    replica.start(&http, Duration::from_secs(120)).await?;
                    fleet.mark(&replica.base_url(), true);
                    mayhem.restarts.fetch_add(1, Ordering::Relaxed);
                    anyhow::Ok(())
                });
            }
        }
        while let Some(done) = restarts.try_join_next() {
            done??;
        }
        if !restarted_database && accepted >= share(0.35) {
            restarted_database = true;
            let away = database.restart().await?;
            mayhem.database_restarts.fetch_add(1, Ordering::Relaxed);
            mayhem.database_down_ms.fetch_add(u64::try_from(away.as_millis())?, Ordering::Relaxed);
        }
        if !gateway_done && gateway_down.is_none() && accepted >= share(0.5) {
            let until = chrono::Utc::now() + chrono::TimeDelta::from_std(options.outage)?;
            gateway_outage(&database.admin, Some(until)).await?;
            gateway_down = Some(Instant::now());
        }
        if let Some(since) = gateway_down
            && since.elapsed() >= options.outage
        {
            gateway_outage(&database.admin, None).await?;
            mayhem.gateway_down_ms.fetch_add(u64::try_from(since.elapsed().as_millis())?, Ordering::Relaxed);
            (gateway_down, gateway_done) = (None, true);
        }
        if !smtp_done && smtp_down.is_none() && accepted >= share(0.65) {
            smtp.down();
            smtp_down = Some(Instant::now());
        }
        if let Some(since) = smtp_down
            && since.elapsed() >= options.outage
        {
            smtp.up().await?;
            mayhem.smtp_down_ms.fetch_add(u64::try_from(since.elapsed().as_millis())?, Ordering::Relaxed);
            (smtp_down, smtp_done) = (None, true);
        }
    }
}

fn kill_interval(options: &Options) -> Duration {
    let (low, high) = options.kill_every;
    Duration::from_secs_f64(if high > low { rand::rng().random_range(low..high) } else { low })
}

/// Polls until nothing is in flight for three looks in a row; returns what still moved if
/// `timeout` ran out first. A look that fails (the machine too busy to answer in time) counts
/// as not quiet.
async fn wait_for_quiet(pool: &sqlx::PgPool, timeout: Duration) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + timeout;
    let mut calm = 0;
    loop {
        let moving = match invariants::in_flight(pool).await {
            Ok(moving) => moving,
            Err(error) => vec![format!("cannot tell: {error:#}")],
        };
        calm = if moving.is_empty() { calm + 1 } else { 0 };
        if calm >= 3 {
            return Ok(Vec::new());
        }
        if Instant::now() > deadline {
            return Ok(moving);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn stop_all(fleet: &Fleet, database: Database) {
    for replica in fleet.replicas.iter() {
        if let Err(error) = replica.lock().await.stop().await {
            tracing::warn!("stopping a replica: {error:#}");
        }
    }
    if let Err(error) = database.stop().await {
        tracing::warn!("stopping PostgreSQL: {error:#}");
    }
}

/// The `bulkhead` binary: given, or next to this benchmark's (same profile), built with cargo
/// when it is not there yet.
fn binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(bin) = given {
        anyhow::ensure!(bin.is_file(), "no bulkhead binary at {}", bin.display());
        return Ok(bin);
    }
    let here = std::env::current_exe().context("finding this benchmark's binary")?;
    let dir = here.parent().context("the benchmark's binary has no folder")?;
    let bin = dir.join("bulkhead");
    if !bin.is_file() {
        let release = dir.ends_with("release");
        eprintln!("building the bulkhead binary ({})", if release { "release" } else { "debug" });
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = std::process::Command::new(cargo);
        command.args(["build", "-p", "bulkhead", "--bin", "bulkhead"]);
        if release {
            command.arg("--release");
        }
        let status = command.status().context("running cargo build")?;
        anyhow::ensure!(status.success() && bin.is_file(), "building {} failed", bin.display());
    }
    Ok(bin)
}
