//! `topology`: Service Weaver's table done for real. The same saga load runs on the monolith
//! (one process) and on the split (one process per module behind an edge), each as separate
//! OS processes of this build on one embedded PostgreSQL, with `pgbench` measured on the same
//! cluster in the same run. For each layout: placements and confirmed orders per second, the
//! saga's latency, the cost of the port call orders makes for every placement (inventory's
//! quote, in process vs over HTTP), and resident memory summed over the processes.

use std::time::{Duration, Instant};

use anyhow::Context;
use inventory_contract::client::InventoryClient;
use inventory_contract::{InventoryApi, ProductRef, Quantity, QuoteLine, Sku};
use platform::db::{AdminAccess, DatabaseSetup, Databases, EmbeddedOptions, EmbeddedPostgres, JobsDatabase};
use platform::port::CallContext;
use platform::remote::{HttpTransport, PortMetrics, ServiceKeys, TransportSettings};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

use crate::measure::{Percentiles, round2};
use crate::pgbench::pgbench;
use crate::processes::{Deployment, Layout};

/// What one run measures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    pub(crate) orders: u64,
    pub(crate) concurrency: u64,
    pub(crate) port_calls: u64,
    pub(crate) pgbench_seconds: u64,
}

/// Starts a cluster, measures both layouts on it, stops it.
///
/// # Errors
/// The cluster or a layout not starting, or a measurement failing.
pub(crate) async fn run(load: Load) -> anyhow::Result<Value> {
    let data_dir = tempfile::tempdir()?;
    let server = EmbeddedPostgres::start(&cluster_options(data_dir.path())).await?;
    let outcome = measure(&server, data_dir.path(), load).await;
    server.stop().await?;
    if outcome.is_err() {
        // The processes' logs say what went wrong.
        let kept = data_dir.keep();
        eprintln!("bench topology: the processes' logs are in {}", kept.display());
    }
    outcome
}

/// The cluster both layouts share. Five processes each hold pools of their own: PostgreSQL's
/// default of 100 connections would run out before the database itself did.
fn cluster_options(dir: &std::path::Path) -> EmbeddedOptions {
    let mut options = EmbeddedOptions::new(dir);
    options.settings.push(("max_connections".to_owned(), "400".to_owned()));
    options
}

async fn measure(server: &EmbeddedPostgres, dir: &std::path::Path, load: Load) -> anyhow::Result<Value> {
    let pgbench_tps = pgbench(server, load.pgbench_seconds, 8)?;
    let mut layouts = serde_json::Map::new();
    for layout in [Layout::Monolith, Layout::Split, Layout::SplitOverKafka] {
        eprintln!("bench topology: {} ...", layout.name());
        let name = format!("bench_{}", layout.name());
        let app_dir = dir.join(layout.name());
        std::fs::create_dir_all(&app_dir)?;
        let (url, broker) = if layout == Layout::SplitOverKafka {
            // A database per module, and the pinned test broker on loopback between them.
            let mut url = String::new();
            for module in crate::processes::MODULES {
                url = create_database(server, &format!("{name}_{module}")).await?;
            }
            let base = url.rsplit_once('_').map(|(base, _)| base.to_owned()).context("a database URL")?;
            (base, Some(platform::testing::kafka::TestBroker::start().await?))
        } else {
            (create_database(server, &name).await?, None)
        };
        let brokers = broker.as_ref().map(platform::testing::kafka::TestBroker::brokers);
        let env: Vec<(&str, &str)> = brokers.iter().map(|b| ("BULKHEAD_KAFKA_BROKERS", b.as_str())).collect();
        let deployment = Deployment::start_with(layout, &url, &app_dir, &env).await?;
        let figures = measure_layout(&deployment, layout, &url, &app_dir, load).await;
        deployment.stop().await;
        layouts.insert(layout.name().to_owned(), figures?);
    }
    Ok(json!({
        "pgbench_tps": pgbench_tps.round(),
        "orders": load.orders,
        "concurrency": load.concurrency,
        "layouts": layouts,
        "notes": [
            "monolith: one process hosting every module; split: one process per module, the orders process as the edge; \
             both are this build's app as separate OS processes on one embedded PostgreSQL (default durability)",
            "split_over_kafka: the split with a database per process (in the same cluster) and events through the \
             pinned test broker (noida-db, loopback), a relay per module and subscriptions reading topics",
            "placements and saga as in `bench orders`: one client at the given concurrency, each order followed on its \
             event stream to `confirmed` (sandbox gateway: 50 ms per call)",
            "port call: inventory's quote of one line, called back to back — in process (the inventory service in this \
             process, as the monolith's orders calls it) and over HTTP (the contract's client with a service token, to \
             the split's inventory process)",
            "rss: VmRSS after start-up and VmHWM at the end, summed over the layout's processes",
            "pgbench: -N, 8 clients, on the same cluster before the layouts run",
        ],
    }))
}

async fn measure_layout(
    deployment: &Deployment,
    layout: Layout,
    url: &str,
    app_dir: &std::path::Path,
    load: Load,
) -> anyhow::Result<Value> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_idle, _) = deployment.rss_mib();
    let saga = crate::orders::measure(&deployment.api, load.orders, load.concurrency).await?;
    let port = match layout {
        Layout::Monolith => quote_in_process(url, load.port_calls).await?,
        Layout::Split | Layout::SplitOverKafka => {
            let inventory = deployment.url_of("inventory").context("no inventory process")?;
            quote_over_http(&inventory, &app_dir.join("service-keys"), load.port_calls).await?
        }
    };
    let (_, rss_peak) = deployment.rss_mib();
    Ok(json!({
        "placements_per_sec": saga["placements_per_sec"],
        "confirmed_per_sec": saga["confirmed_per_sec"],
        "orders_confirmed": saga["orders_confirmed"],
        "placement_p50_ms": saga["placement_p50_ms"],
        "placement_p99_ms": saga["placement_p99_ms"],
        "saga_p50_ms": saga["saga_latency_p50_ms"],
        "saga_p99_ms": saga["saga_latency_p99_ms"],
        "port_call_transport": if layout == Layout::Monolith { "in_process" } else { "http" },
        "port_call_p50_ms": port.p50,
        "port_call_p99_ms": port.p99,
        "rss_idle_mb": round2(rss_idle),
        "rss_peak_mb": round2(rss_peak),
    }))
}

/// A fresh database in the cluster; the superuser URL of it (the processes provision their
/// roles through it, as `DATABASE_URL`).
pub(crate) async fn create_database(server: &EmbeddedPostgres, name: &str) -> anyhow::Result<String> {
    let mut admin = PgConnection::connect_with(&server.connect_options("postgres")).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await?;
    admin.close().await?;
    let address = server.address();
    Ok(format!(
        "postgres://{}:{}@127.0.0.1:{}/{name}",
        platform::db::embedded::SUPERUSER,
        address.password.expose_secret(),
        address.port
    ))
}

/// The line every quote prices: a demo product.
fn line() -> anyhow::Result<QuoteLine> {
    let sku = Sku::parse("MUG-001").map_err(anyhow::Error::msg)?;
    let quantity = Quantity::new(1).map_err(anyhow::Error::msg)?;
    Ok(QuoteLine { product: ProductRef::Sku(sku), quantity })
}

async fn quote_latencies(port: &dyn InventoryApi, calls: u64) -> anyhow::Result<Percentiles> {
    let lines = [line()?];
    let mut samples = Vec::new();
    for _ in 0..calls {
        let started = Instant::now();
        let quote = port.quote(&CallContext::system("bench"), &lines).await.context("quoting")?;
        samples.push(started.elapsed());
        anyhow::ensure!(quote.problems.is_empty(), "MUG-001 cannot be quoted: {:?}", quote.problems);
    }
    Percentiles::of(&samples)
}

/// Inventory's service in this process, on the monolith's database, as the monolith's orders
/// calls it.
async fn quote_in_process(url: &str, calls: u64) -> anyhow::Result<Percentiles> {
    let setup = DatabaseSetup {
        admin: Some(AdminAccess::from_url(&SecretString::from(url.to_owned()))?),
        module_urls: Default::default(),
        pool_size: 4,
        jobs: JobsDatabase::Disabled,
        peers: Vec::new(),
    };
    let databases = Databases::connect(&setup, &[inventory::DESCRIPTOR.schema]).await?;
    let verifier = platform::auth::JwtVerifier::new("bulkhead", "bulkhead-api");
    let module = inventory::InventoryModule::new(
        databases.pool("inventory")?.clone(),
        verifier,
        inventory::InventoryConfig::default(),
    );
    let latencies = quote_latencies(module.api().as_ref(), calls).await;
    databases.close().await;
    latencies
}

/// The contract's client with the orders module's service key, to the split's inventory
/// process, as the split's orders calls it.
async fn quote_over_http(inventory: &str, keys_dir: &std::path::Path, calls: u64) -> anyhow::Result<Percentiles> {
    let keys = ServiceKeys::open(keys_dir)?;
    keys.sign_for("orders")?;
    let transport = HttpTransport::new(
        reqwest::Client::builder().no_proxy().build()?,
        &inventory.parse()?,
        "orders",
        "inventory",
        keys,
        TransportSettings::default(),
        PortMetrics::register(&platform::metrics::Metrics::new()),
    );
    quote_latencies(&InventoryClient::new(std::sync::Arc::new(transport)), calls).await
}
