//! `saga`: what an order costs, on a realistic shop. The monolith runs as its own OS process
//! (this build) on an embedded PostgreSQL the benchmark starts, with `pgbench` measured on the
//! same cluster in the same run. The shop has about 1,000 products and 200 customers; orders
//! have 1 to 3 lines and about 5% of them are paid with a card the gateway declines.
//!
//! Measured, in order:
//! 1. idle: PostgreSQL transactions per second, connections held, CPU (the app and every
//!    PostgreSQL process) and resident memory, with the shop seeded and nothing happening;
//! 2. the closed-loop maximum: orders placed back to back at a fixed concurrency until all are
//!    settled, and what they cost the database (`pg_stat_database` deltas) and the app (CPU);
//! 3. open-loop latency: orders offered at a fixed rate whatever the app does, each latency
//!    counted from when the order was due (coordinated omission corrected), into HDR histograms.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use platform::db::{EmbeddedOptions, EmbeddedPostgres};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::app::{self, ADMIN_EMAIL, ADMIN_PASSWORD, Api, PASSWORD};
use crate::measure::{at_concurrency, round2};
use crate::pgbench::pgbench;
use crate::processes::{Deployment, Layout};

/// Orders still moving through the saga.
const UNSETTLED: &str = "('pending', 'awaiting_payment')";
/// How long PostgreSQL may keep a backend's counters before `pg_stat_database` shows them:
/// an idle backend flushes them at most 10 s after its last transaction.
const STATS_FLUSH: Duration = Duration::from_secs(11);
/// How long the shop is left alone before it counts as idle: what the seeding set off
/// settles, its counters reach the statistics, and connections a burst opened are closed
/// (pools close connections unused for 30 s).
const SETTLE: Duration = Duration::from_secs(40);

/// What one run does (the `saga` command's flags).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Options {
    /// Products in the catalogue.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(3..=100_000))]
    pub(crate) products: u64,
    /// Customers placing orders.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub(crate) customers: u64,
    /// Orders in the closed-loop run.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub(crate) orders: u64,
    /// Placements in flight at once in the closed-loop run.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub(crate) concurrency: u64,
    /// Orders offered per second in the open-loop run (default: half the closed-loop
    /// confirmed rate).
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Length of the open-loop run.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) open_seconds: u64,
    /// Length of the idle measurement.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) idle_seconds: u64,
    /// The sandbox gateway's simulated latency per call (0: the saga's own overhead only).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub(crate) gateway_latency_ms: u64,
    /// Per cent of orders paid with a card the gateway declines.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub(crate) declined_percent: u32,
    /// Seconds of pgbench.
    #[arg(long, default_value_t = 10)]
    pub(crate) pgbench_seconds: u64,
    /// Seed of the shoppers' choices.
    #[arg(long, default_value_t = 16)]
    pub(crate) seed: u64,
    /// Also report the statements the closed loop ran most (loads `pg_stat_statements`).
    #[arg(long)]
    pub(crate) statements: bool,
}

/// Starts a cluster and the app on it, measures, stops both.
///
/// # Errors
/// The cluster or the app not starting, or a step of the load failing.
pub(crate) async fn run(options: Options) -> anyhow::Result<Value> {
    let data_dir = tempfile::tempdir()?;
    let mut cluster = EmbeddedOptions::new(data_dir.path());
    if options.statements {
        cluster.settings.push(("shared_preload_libraries".to_owned(), "pg_stat_statements".to_owned()));
        cluster.settings.push(("pg_stat_statements.track".to_owned(), "all".to_owned()));
    }
    let server = EmbeddedPostgres::start(&cluster).await?;
    let outcome = measure(&server, &cluster, data_dir.path(), &options).await;
    server.stop().await?;
    if outcome.is_err() {
        let kept = data_dir.keep();
        eprintln!("bench saga: the app's log is in {}", kept.join("app").display());
    }
    outcome
}

async fn measure(
    server: &EmbeddedPostgres,
    cluster: &EmbeddedOptions,
    dir: &Path,
    options: &Options,
) -> anyhow::Result<Value> {
    let progress = Progress::new();
    progress.stage("pgbench", None);
    let pgbench_tps = pgbench(server, options.pgbench_seconds, 16)?;

    let database = "bench_saga";
    let url = crate::topology::create_database(server, database).await?;
    let app_dir = dir.join("app");
    std::fs::create_dir_all(&app_dir)?;
    let latency = format!("{}ms", options.gateway_latency_ms);
    let env = [("BULKHEAD_PAYMENTS_SANDBOX_LATENCY", latency.as_str())];
    progress.stage("starting the app", None);
    let deployment = Deployment::start_with(Layout::Monolith, &url, &app_dir, &env).await?;
    let outcome = async {
        let app_pid = *deployment.pids().first().context("the app has no process")?;
        let postmaster = postmaster_pid(&cluster.data_dir)?;
        let stats = Stats::connect(server, database).await?;
        let shop = Shop::seed(&deployment.api, options, &progress).await?;

        progress.stage("idle", Some(options.idle_seconds));
        progress.message("settling");
        tokio::time::sleep(SETTLE).await;
        progress.message("");
        if options.statements {
            stats.reset_statements().await?;
        }
        let idle = measure_idle(&stats, &deployment, app_pid, postmaster, options.idle_seconds, &progress).await?;
        let idle_statements = if options.statements {
            stats.top_statements(options.idle_seconds as f64, "second").await?
        } else {
            Value::Null
        };

        if options.statements {
            stats.reset_statements().await?;
        }
        progress.stage("closed loop", Some(options.orders));
        let closed = closed_loop(&shop, &stats, app_pid, options, &progress).await?;
        let top_statements = if options.statements {
            stats.top_statements(closed.confirmed.max(1) as f64, "order").await?
        } else {
            Value::Null
        };

        let rate = options.rate.unwrap_or(closed.confirmed_per_sec / 2.0).max(0.5);
        let offered = (rate * options.open_seconds as f64).ceil() as u64;
        progress.stage(&format!("open loop at {rate:.1}/s"), Some(offered));
        let open = open_loop(&shop, &stats, rate, offered, &progress).await?;
        let (_, rss_peak) = deployment.rss_mib();
        progress.finish();

        let per_order = |delta: i64| round2(delta as f64 / closed.confirmed.max(1) as f64);
        Ok(json!({
            "pgbench_tps": pgbench_tps.round(),
            "placements_per_sec": round2(closed.placements_per_sec),
            "confirmed_per_sec": round2(closed.confirmed_per_sec),
            "placements_pct_of_pgbench": round2(100.0 * closed.placements_per_sec / pgbench_tps),
            "confirmed_pct_of_pgbench": round2(100.0 * closed.confirmed_per_sec / pgbench_tps),
            "offered_rate_per_sec": round2(rate),
            "placement_p50_ms": open.placement.p50,
            "placement_p99_ms": open.placement.p99,
            "saga_p50_ms": open.saga.p50,
            "saga_p99_ms": open.saga.p99,
            "db_transactions_per_order": per_order(closed.cost.transactions),
            "db_row_writes_per_order": per_order(closed.cost.row_writes),
            "cpu_ms_per_order": round2(closed.app_cpu_ms / closed.confirmed.max(1) as f64),
            "idle_db_transactions_per_sec": round2(idle.transactions_per_sec),
            "idle_db_connections": idle.connections,
            "idle_db_connections_by_application": idle.connections_by_application,
            "idle_db_connections_opened_per_min": round2(idle.connections_opened_per_min),
            "idle_cpu_ms_per_sec": round2(idle.app_cpu_ms_per_sec + idle.postgres_cpu_ms_per_sec),
            "idle_app_cpu_ms_per_sec": round2(idle.app_cpu_ms_per_sec),
            "idle_postgres_cpu_ms_per_sec": round2(idle.postgres_cpu_ms_per_sec),
            "rss_idle_mb": round2(idle.rss_mb),
            "rss_idle_anon_mb": round2(idle.rss_anon_mb),
            "rss_idle_file_mb": round2(idle.rss_file_mb),
            "rss_peak_mb": round2(rss_peak),
            "closed_loop": {
                "orders": options.orders,
                "concurrency": options.concurrency,
                "confirmed": closed.confirmed,
                "cancelled": closed.cancelled,
                "db_transactions": closed.cost.transactions,
                "db_row_writes": closed.cost.row_writes,
                "app_cpu_ms": round2(closed.app_cpu_ms),
            },
            "open_loop": {
                "orders": offered,
                "confirmed": open.confirmed,
                "placement_max_ms": open.placement.max,
                "saga_max_ms": open.saga.max,
            },
            "shop": {
                "products": options.products,
                "customers": options.customers,
                "lines_per_order": "1 to 3",
                "declined_percent": options.declined_percent,
                "gateway_latency_ms": options.gateway_latency_ms,
            },
            "top_statements": top_statements,
            "idle_top_statements": idle_statements,
            "cores": std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            "notes": [
                "the app: this build as one OS process hosting every module (the monolith), on an embedded \
                 PostgreSQL 15 with default durability that the benchmark starts",
                "pgbench: -N (simple updates), 16 clients, 2 threads, on the same cluster before the app starts",
                "closed loop: the given concurrency of clients placing orders back to back, then waiting until \
                 every order is confirmed or cancelled; confirmed/s runs to the last confirmation",
                "open loop: orders due at a fixed rate (default: half the closed-loop confirmed rate, the most \
                 the whole saga sustains), each latency counted from when it was due (coordinated omission \
                 corrected); saga = from due to `confirmed` as the app recorded it",
                "cost per confirmed order: pg_stat_database deltas over the closed loop (commits + rollbacks; \
                 rows inserted + updated + deleted), the benchmark's own status polls taken out; \
                 declined orders' cost is included, spread over the confirmed ones",
                "cpu: utime + stime of the app's process; idle cpu adds every PostgreSQL process of the cluster",
                "idle: measured after the seeded shop was left alone for 40 s; connections are the cluster's \
                 client backends, the benchmark's own taken out",
            ],
        }))
    }
    .await;
    deployment.stop().await;
    outcome
}

/// The superuser's connection to the app's database, for its statistics and the orders'
/// statuses. Every statement it sends is counted, so its own transactions can be taken out.
struct Stats {
    connection: tokio::sync::Mutex<PgConnection>,
    database: String,
    statements: std::sync::atomic::AtomicI64,
}

/// The database's counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    transactions: i64,
    row_writes: i64,
    /// Connections opened (`pg_stat_database.sessions`).
    sessions: i64,
}

impl std::ops::Sub for Counters {
    type Output = Self;
    fn sub(self, other: Self) -> Self {
        Self {
            transactions: self.transactions - other.transactions,
            row_writes: self.row_writes - other.row_writes,
            sessions: self.sessions - other.sessions,
        }
    }
}

impl Stats {
    async fn connect(server: &EmbeddedPostgres, database: &str) -> anyhow::Result<Self> {
        let connection = PgConnection::connect_with(&server.connect_options(database)).await?;
        Ok(Self {
            connection: tokio::sync::Mutex::new(connection),
            database: database.to_owned(),
            statements: std::sync::atomic::AtomicI64::new(0),
        })
    }

    /// The counters, less the transactions this connection made itself.
    async fn counters(&self) -> anyhow::Result<Counters> {
        let mut connection = self.connection.lock().await;
        self.statements.fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        // A fresh snapshot: the view caches within a transaction otherwise.
        sqlx::query("SELECT pg_stat_clear_snapshot()").execute(&mut *connection).await?;
        let (transactions, row_writes, sessions): (i64, i64, i64) = sqlx::query_as(
            "SELECT xact_commit + xact_rollback, tup_inserted + tup_updated + tup_deleted, sessions
               FROM pg_stat_database WHERE datname = $1",
        )
        .bind(&self.database)
        .fetch_one(&mut *connection)
        .await?;
        let own = self.statements.load(std::sync::atomic::Ordering::Relaxed);
        Ok(Counters { transactions: transactions - own, row_writes, sessions })
    }

    /// Starts `pg_stat_statements` afresh (creating it on first use).
    async fn reset_statements(&self) -> anyhow::Result<()> {
        let mut connection = self.connection.lock().await;
        self.statements.fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(&mut *connection).await?;
        sqlx::query("SELECT pg_stat_statements_reset()").execute(&mut *connection).await?;
        Ok(())
    }

    /// The statements run most since the reset, as calls per `unit` (`per` of them), with
    /// their total time per unit, and the role that ran them.
    async fn top_statements(&self, per: f64, unit: &str) -> anyhow::Result<Value> {
        let mut connection = self.connection.lock().await;
        self.statements.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let rows: Vec<(i64, f64, String)> = sqlx::query_as(
            "SELECT s.calls, s.total_exec_time, '[' || r.rolname || '] ' || s.query
               FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
              WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
              ORDER BY s.calls DESC LIMIT 100",
        )
        .fetch_all(&mut *connection)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(calls, total_ms, query)| {
                let query: String = query.split_whitespace().collect::<Vec<_>>().join(" ");
                let query: String = query.chars().take(160).collect();
                json!(format!("{:>7.2} calls/{unit} {:>7.3} ms/{unit}  {query}", calls as f64 / per, total_ms / per))
            })
            .collect())
    }

    /// Client connections to the cluster, this one left out.
    async fn connections(&self) -> anyhow::Result<i64> {
        let mut connection = self.connection.lock().await;
        self.statements.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut *connection)
        .await?)
    }

    /// [`Stats::connections`] per `application_name`, most first.
    async fn connections_by_application(&self) -> anyhow::Result<serde_json::Value> {
        let mut connection = self.connection.lock().await;
        self.statements.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT application_name, count(*) FROM pg_stat_activity
              WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
              GROUP BY 1 ORDER BY 2 DESC, 1",
        )
        .fetch_all(&mut *connection)
        .await?;
        Ok(rows.into_iter().map(|(name, count)| (name, json!(count))).collect::<serde_json::Map<_, _>>().into())
    }

    /// How many of `orders` are not settled yet.
    async fn unsettled(&self, orders: &[Uuid]) -> anyhow::Result<i64> {
        let mut connection = self.connection.lock().await;
        self.statements.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM orders.orders WHERE id = ANY($1) AND status IN {UNSETTLED}"
        )))
        .bind(orders)
        .fetch_one(&mut *connection)
        .await?)
    }

    /// When each of `orders` that was confirmed became so, as the app recorded it.
    async fn confirmed_at(&self, orders: &[Uuid]) -> anyhow::Result<HashMap<Uuid, DateTime<Utc>>> {
        let mut connection = self.connection.lock().await;
        self.statements.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let rows: Vec<(Uuid, DateTime<Utc>)> = sqlx::query_as(
            "SELECT order_id, min(at) FROM orders.order_timeline
              WHERE order_id = ANY($1) AND status = 'confirmed' GROUP BY order_id",
        )
        .bind(orders)
        .fetch_all(&mut *connection)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Waits until every one of `orders` is confirmed or cancelled.
    async fn until_settled(&self, orders: &[Uuid], progress: &Progress) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let left = self.unsettled(orders).await?;
            progress.message(&format!("{left} orders still in the saga"));
            if left == 0 {
                return Ok(());
            }
            anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "{left} orders unsettled after 10 minutes");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The seeded shop: products to buy and customers signed in.
#[derive(Clone)]
struct Shop {
    api: Api,
    skus: Arc<Vec<String>>,
    tokens: Arc<Vec<String>>,
    declined_percent: u32,
    seed: u64,
}

impl Shop {
    /// Creates the products (each with plenty of stock) and registers and signs in the
    /// customers, through the API as an admin and as the customers would.
    async fn seed(api: &Api, options: &Options, progress: &Progress) -> anyhow::Result<Self> {
        let admin: Arc<str> = api.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await?.into();
        progress.stage("seeding products", Some(options.products));
        let creator = api.clone();
        let counter = progress.bar.clone();
        let (skus, _) = at_concurrency(options.products, 8, move |_| {
            let (api, admin, counter) = (creator.clone(), admin.clone(), counter.clone());
            async move {
                let sku = format!("BENCH-{}", &Uuid::new_v4().simple().to_string()[..12]).to_uppercase();
                let cents = 500 + rand::rng().random_range(0..9_500);
                let body = json!({
                    "sku": sku, "name": format!("Bench product {sku}"), "price": { "amount": cents, "currency": "EUR" },
                    "initial_stock": 1_000_000,
                });
                let response = api
                    .client
                    .post(api.url("/api/v1/products"))
                    .bearer_auth(&*admin)
                    .header("idempotency-key", Uuid::new_v4().to_string())
                    .json(&body)
                    .send()
                    .await?;
                app::expect(response, StatusCode::CREATED, "creating a product").await?;
                counter.inc(1);
                anyhow::Ok(sku)
            }
        })
        .await?;

        progress.stage("seeding customers", Some(options.customers));
        let registrar = api.clone();
        let counter = progress.bar.clone();
        let (tokens, _) = at_concurrency(options.customers, 4, move |_| {
            let (api, counter) = (registrar.clone(), counter.clone());
            async move {
                let email = format!("customer-{}@bench.example", Uuid::new_v4().simple());
                api.register(&email).await?;
                let token = api.sign_in(&email, PASSWORD).await?;
                counter.inc(1);
                anyhow::Ok(token)
            }
        })
        .await?;
        Ok(Self {
            api: api.clone(),
            skus: Arc::new(skus),
            tokens: Arc::new(tokens),
            declined_percent: options.declined_percent,
            seed: options.seed,
        })
    }

    /// The `n`-th order's customer and body: 1 to 3 different products, 1 or 2 of each,
    /// `declined_percent` of them with a card the gateway declines.
    fn order(&self, n: u64) -> (String, Value) {
        let mut rng = StdRng::seed_from_u64(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let token = self.tokens.choose(&mut rng).cloned().unwrap_or_default();
        let count = rng.random_range(1..=3);
        let lines: Vec<Value> = self
            .skus
            .choose_multiple(&mut rng, count)
            .map(|sku| json!({ "sku": sku, "quantity": rng.random_range(1..=2) }))
            .collect();
        let card = if rng.random_range(0..100) < self.declined_percent { "pm_card_declined" } else { "pm_card_visa" };
        let body = json!({
            "lines": lines,
            "shipping_address": {
                "name": "Bench Customer", "line1": "1 High St", "city": "Leeds", "postal_code": "LS1 1AA", "country": "GB"
            },
            "payment_method": card,
        });
        (token, body)
    }

    /// Places the `n`-th order; returns its id.
    async fn place(&self, n: u64) -> anyhow::Result<Uuid> {
        let (token, body) = self.order(n);
        let response = self
            .api
            .client
            .post(self.api.url("/api/v1/orders"))
            .bearer_auth(token)
            .header("idempotency-key", Uuid::new_v4().to_string())
            .json(&body)
            .send()
            .await
            .context("placing an order")?;
        let order = app::expect(response, StatusCode::ACCEPTED, "placing an order").await?;
        order["data"]["id"].as_str().context("the placed order has no id")?.parse().context("an order id")
    }
}

/// The shop at rest.
struct Idle {
    transactions_per_sec: f64,
    connections: i64,
    /// The same, per `application_name` (each pool and listener names itself).
    connections_by_application: serde_json::Value,
    /// Connections opened meanwhile (a pool that closes and reopens them costs CPU).
    connections_opened_per_min: f64,
    app_cpu_ms_per_sec: f64,
    postgres_cpu_ms_per_sec: f64,
    rss_mb: f64,
    /// Of `rss_mb`: the heap and stacks, and the binary's and libraries' pages.
    rss_anon_mb: f64,
    rss_file_mb: f64,
}

async fn measure_idle(
    stats: &Stats,
    deployment: &Deployment,
    app: u32,
    postmaster: u32,
    seconds: u64,
    progress: &Progress,
) -> anyhow::Result<Idle> {
    let before = stats.counters().await?;
    let (app_before, postgres_before) = (cpu_ms(app), cluster_cpu(postmaster));
    let started = Instant::now();
    for _ in 0..seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        progress.bar.inc(1);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (app_after, postgres_after) = (cpu_ms(app), cluster_cpu(postmaster));
    let after = stats.counters().await?;
    let [rss_mb, rss_anon_mb, rss_file_mb] = deployment.status_mib(["VmRSS:", "RssAnon:", "RssFile:"]);
    Ok(Idle {
        transactions_per_sec: (after - before).transactions as f64 / elapsed,
        connections: stats.connections().await?,
        connections_by_application: stats.connections_by_application().await?,
        connections_opened_per_min: (after - before).sessions as f64 * 60.0 / elapsed,
        app_cpu_ms_per_sec: (app_after - app_before) / elapsed,
        postgres_cpu_ms_per_sec: cpu_between(&postgres_before, &postgres_after) / elapsed,
        rss_mb,
        rss_anon_mb,
        rss_file_mb,
    })
}

/// The closed-loop run.
struct Closed {
    placements_per_sec: f64,
    confirmed_per_sec: f64,
    confirmed: u64,
    cancelled: u64,
    cost: Counters,
    app_cpu_ms: f64,
}

async fn closed_loop(
    shop: &Shop,
    stats: &Stats,
    app: u32,
    options: &Options,
    progress: &Progress,
) -> anyhow::Result<Closed> {
    let before = stats.counters().await?;
    let cpu_before = cpu_ms(app);
    let wall_start = Utc::now();
    let shop = Arc::new(shop.clone());
    let counter = progress.bar.clone();
    let (placed, elapsed) = at_concurrency(options.orders, options.concurrency, {
        let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
        move |_| {
            let (shop, counter) = (shop.clone(), counter.clone());
            let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move {
                let id = shop.place(n).await?;
                counter.inc(1);
                anyhow::Ok(id)
            }
        }
    })
    .await?;
    stats.until_settled(&placed, progress).await?;
    let cpu_after = cpu_ms(app);
    let confirmed = stats.confirmed_at(&placed).await?;
    let last = confirmed.values().max().copied().unwrap_or(wall_start);
    // Every effect of the saga (emails, follow-up events) reaches the counters.
    progress.message("waiting for the statistics");
    tokio::time::sleep(STATS_FLUSH).await;
    let after = stats.counters().await?;
    Ok(Closed {
        placements_per_sec: placed.len() as f64 / elapsed.as_secs_f64(),
        confirmed_per_sec: confirmed.len() as f64 / (last - wall_start).to_std()?.as_secs_f64().max(0.001),
        confirmed: confirmed.len() as u64,
        cancelled: (placed.len() - confirmed.len()) as u64,
        cost: after - before,
        app_cpu_ms: cpu_after - cpu_before,
    })
}

/// p50, p99 and the maximum of one histogram, in milliseconds.
#[derive(Debug, Clone, Copy)]
struct Quantiles {
    p50: f64,
    p99: f64,
    max: f64,
}

impl Quantiles {
    fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |micros: u64| round2(micros as f64 / 1000.0);
        Self {
            p50: ms(histogram.value_at_quantile(0.50)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
        }
    }
}

struct Open {
    placement: Quantiles,
    saga: Quantiles,
    confirmed: usize,
}

/// Offers `count` orders at `rate` per second, each sent when due whatever the app is doing.
async fn open_loop(shop: &Shop, stats: &Stats, rate: f64, count: u64, progress: &Progress) -> anyhow::Result<Open> {
    // Other orders than the closed loop's.
    let shop = Arc::new(Shop { seed: shop.seed.wrapping_add(1), ..shop.clone() });
    let interval = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    let wall_started = Utc::now();
    let mut sent = tokio::task::JoinSet::new();
    for n in 0..count {
        let due = started + interval.mul_f64(n as f64);
        tokio::time::sleep_until(due.into()).await;
        let (shop, counter) = (shop.clone(), progress.bar.clone());
        let due_wall = wall_started + chrono::Duration::from_std(due - started)?;
        sent.spawn(async move {
            let id = shop.place(n).await?;
            counter.inc(1);
            // From when it was due, not from when it could be sent.
            anyhow::Ok((id, due.elapsed(), due_wall))
        });
    }
    let mut placement = Histogram::<u64>::new(3)?;
    let mut due = HashMap::new();
    while let Some(outcome) = sent.join_next().await {
        let (id, latency, due_wall) = outcome??;
        placement.record(micros(latency))?;
        due.insert(id, due_wall);
    }
    let ids: Vec<Uuid> = due.keys().copied().collect();
    stats.until_settled(&ids, progress).await?;
    let mut saga = Histogram::<u64>::new(3)?;
    let confirmed = stats.confirmed_at(&ids).await?;
    for (id, at) in &confirmed {
        let latency = (*at - due[id]).to_std().unwrap_or(Duration::ZERO);
        saga.record(micros(latency))?;
    }
    anyhow::ensure!(!confirmed.is_empty(), "no order of the open loop was confirmed");
    Ok(Open { placement: Quantiles::of(&placement), saga: Quantiles::of(&saga), confirmed: confirmed.len() })
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// The progress bar on stderr: one stage at a time.
struct Progress {
    bar: ProgressBar,
}

impl Progress {
    fn new() -> Self {
        let bar = ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        bar.enable_steady_tick(Duration::from_millis(200));
        Self { bar }
    }

    /// Starts a stage of `length` steps (`None`: a spinner).
    fn stage(&self, name: &str, length: Option<u64>) {
        let style = match length {
            Some(_) => ProgressStyle::with_template("{prefix:>22} [{bar:32}] {pos}/{len} {elapsed} {msg}"),
            None => ProgressStyle::with_template("{prefix:>22} {spinner} {elapsed} {msg}"),
        };
        if let Ok(style) = style {
            self.bar.set_style(style.progress_chars("=> "));
        }
        self.bar.set_prefix(name.to_owned());
        self.bar.set_message("");
        self.bar.set_position(0);
        self.bar.set_length(length.unwrap_or(0));
        self.bar.reset_elapsed();
    }

    fn message(&self, message: &str) {
        self.bar.set_message(message.to_owned());
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// A process's parent and the CPU time (user + system) it has used so far, in milliseconds,
/// from one read of `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(u32, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces: the parent
    // is field 4 of the line (1 after the name), utime and stime 14 and 15 (11 and 12).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let parent = fields.get(1)?.parse().ok()?;
    let ticks: f64 = [11, 12].iter().filter_map(|i| fields.get(*i)?.parse::<f64>().ok()).sum();
    Some((parent, ticks * 1000.0 / clock_ticks_per_second()))
}

fn cpu_ms(pid: u32) -> f64 {
    proc_stat(pid).map_or(0.0, |(_, cpu)| cpu)
}

fn clock_ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().map_or(100.0, |ticks| ticks as f64)
}

/// CPU time so far of the postmaster and of every process it started, in milliseconds.
fn cluster_cpu(postmaster: u32) -> HashMap<u32, f64> {
    let mut processes: HashMap<u32, f64> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| proc_stat(pid).filter(|(parent, _)| *parent == postmaster).map(|(_, cpu)| (pid, cpu)))
        .collect();
    processes.insert(postmaster, cpu_ms(postmaster));
    processes
}

/// CPU used between two [`cluster_cpu`] readings: by the processes alive at both (their
/// growth) and by those started in between (all of theirs). A process that ended in between
/// is not counted: its time would come in whole, including what it used before.
fn cpu_between(before: &HashMap<u32, f64>, after: &HashMap<u32, f64>) -> f64 {
    after.iter().map(|(pid, now)| now - before.get(pid).copied().unwrap_or(0.0)).sum()
}

fn postmaster_pid(data_dir: &Path) -> anyhow::Result<u32> {
    let file: PathBuf = data_dir.join("postgres").join("postmaster.pid");
    let contents = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    contents.lines().next().and_then(|line| line.trim().parse().ok()).context("postmaster.pid without a pid")
}
