//! `bus`: the event bus on a fresh embedded PostgreSQL cluster, plus `pgbench` on the same
//! cluster for scale; on the PostgreSQL transport, or through Kafka (`--transport kafka`: the
//! pinned test broker on loopback, a relay forwarding the outbox, the subscription reading the
//! topic).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use platform::bus::{BusBuilder, BusConfig, Event, Metadata, StartFrom, Subscription, handler_fn};
use platform::db::{
    AdminAccess, DatabaseSetup, Databases, EmbeddedOptions, EmbeddedPostgres, JobsDatabase, ModuleSchema,
};
use platform::metrics::Metrics;
use serde::{Deserialize, Serialize};
use sqlx::migrate::Migrator;
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tick {
    key: String,
}

impl Event for Tick {
    const TYPE: &'static str = "benchpub.tick";
    const VERSION: u32 = 1;

    fn aggregate_key(&self) -> String {
        self.key.clone()
    }
}

/// How events travel from the publisher to the subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Transport {
    Postgres,
    Kafka,
}

/// The transport as the bus is built with it.
#[derive(Debug)]
enum Travel {
    Postgres,
    /// Each run gets topics of its own on `brokers`: those of `BULKHEAD_KAFKA_BROKERS`, or
    /// the test broker started for this benchmark (kept here until it ends).
    Kafka {
        brokers: String,
        _test_broker: Option<platform::testing::kafka::TestBroker>,
    },
}

const PUBLISHER: &str = "benchpub";
const SUBSCRIBER: &str = "benchsub";

/// Runs the bus benchmark on a fresh embedded cluster and returns its figures.
pub(crate) async fn run(
    events: u64,
    rate: u64,
    seconds: u64,
    pgbench_seconds: u64,
    batch: Option<i64>,
    transport: Transport,
) -> anyhow::Result<serde_json::Value> {
    let config = BusConfig { batch_size: batch.unwrap_or(BusConfig::default().batch_size), ..BusConfig::default() };
    let travel = match transport {
        Transport::Postgres => Travel::Postgres,
        Transport::Kafka => match std::env::var("BULKHEAD_KAFKA_BROKERS").ok().filter(|b| !b.is_empty()) {
            Some(brokers) => Travel::Kafka { brokers, _test_broker: None },
            None => {
                let broker = platform::testing::kafka::TestBroker::start().await?;
                Travel::Kafka { brokers: broker.brokers(), _test_broker: Some(broker) }
            }
        },
    };
    let data_dir = tempfile::tempdir()?;
    let server = EmbeddedPostgres::start(&EmbeddedOptions::new(data_dir.path())).await?;
    let outcome = measure(&server, &config, &travel, events, rate, seconds, pgbench_seconds).await;
    server.stop().await?;
    outcome
}

async fn measure(
    server: &EmbeddedPostgres,
    config: &BusConfig,
    travel: &Travel,
    events: u64,
    rate: u64,
    seconds: u64,
    pgbench_seconds: u64,
) -> anyhow::Result<serde_json::Value> {
    let mut admin = PgConnection::connect_with(&server.connect_options("postgres")).await?;
    sqlx::query("CREATE DATABASE bench").execute(&mut admin).await?;
    admin.close().await?;
    let no_migrations: &'static Migrator = Box::leak(Box::new(Migrator::with_migrations(Vec::new())));
    let schemas = [
        ModuleSchema { name: PUBLISHER, migrations: no_migrations },
        ModuleSchema { name: SUBSCRIBER, migrations: no_migrations },
    ];
    let setup = DatabaseSetup {
        admin: Some(AdminAccess {
            options: server.connect_options("bench"),
            role_secret: server.address().password.clone(),
        }),
        module_urls: Default::default(),
        pool_size: 16,
        // The bus alone is measured.
        jobs: JobsDatabase::Disabled,
        peers: Vec::new(),
    };
    let databases = Databases::connect(&setup, &schemas).await?;
    databases.migrate(&schemas).await?;

    let one = throughput(&databases, config, travel, "benchsub.one", 1, events).await?;
    let four = throughput(&databases, config, travel, "benchsub.four", 4, events).await?;
    let (p50, p99, measured) = latency(&databases, config, travel, rate, seconds).await?;
    databases.close().await;

    let mut report = serde_json::json!({
        "transport": match travel { Travel::Postgres => "postgres", Travel::Kafka { .. } => "kafka" },
        "events_per_sec_1_partition": one.round(),
        "events_per_sec_4_partitions": four.round(),
        "latency_p50_ms": (p50 * 100.0).round() / 100.0,
        "latency_p99_ms": (p99 * 100.0).round() / 100.0,
        "throughput_events": events,
        "latency_events": measured,
        "latency_rate_per_sec": rate,
        "batch_size": config.batch_size,
    });
    match crate::pgbench::pgbench(server, pgbench_seconds, 8) {
        Ok(tps) => report["pgbench_tps"] = tps.round().into(),
        Err(error) => report["pgbench_note"] = format!("pgbench not run: {error:#}").into(),
    }
    Ok(report)
}

/// Appends `events` as fast as four producers can (100 per transaction) while a trivial
/// handler consumes them; events per second from the first append to the last handling.
async fn throughput(
    databases: &Databases,
    config: &BusConfig,
    travel: &Travel,
    name: &'static str,
    partitions: u16,
    events: u64,
) -> anyhow::Result<f64> {
    let handled = Arc::new(AtomicU64::new(0));
    let counter = handled.clone();
    let subscription =
        Subscription::new(name, PUBLISHER).partitions(partitions).on::<Tick>(handler_fn(move |_, _: Tick| {
            counter.fetch_add(1, Ordering::Relaxed);
            Box::pin(async { Ok(()) })
        }));
    let (stop, tasks, _) = start_bus(databases, subscription, config.clone(), travel).await?;
    let publisher = databases.pool(PUBLISHER)?.clone();
    let started = Instant::now();
    let producers: Vec<_> = (0..4)
        .map(|producer| {
            let pool = publisher.clone();
            tokio::spawn(async move {
                for batch in 0..events / 400 {
                    let ticks: Vec<Tick> =
                        (0..100).map(|i| Tick { key: format!("k{}", (producer * 7 + batch * 3 + i) % 64) }).collect();
                    append(&pool, &ticks).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for producer in producers {
        producer.await??;
    }
    let expected = events / 400 * 400;
    while handled.load(Ordering::Relaxed) < expected {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "the bus did not keep up within 10 minutes");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop.cancel();
    tasks.join().await;
    Ok(expected as f64 / elapsed)
}

/// At a low steady rate, after a warm-up, the time from an append's commit returning to its
/// handler starting.
async fn latency(
    databases: &Databases,
    config: &BusConfig,
    travel: &Travel,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<(f64, f64, usize)> {
    let started_at: Arc<Mutex<HashMap<Uuid, Instant>>> = Arc::default();
    let record = started_at.clone();
    let subscription = Subscription::new("benchsub.latency", PUBLISHER).start_from(StartFrom::Latest).on::<Tick>(
        handler_fn(move |ctx, _: Tick| {
            record.lock().map(|mut m| m.insert(ctx.envelope.id, Instant::now())).ok();
            Box::pin(async { Ok(()) })
        }),
    );
    let config = BusConfig { poll_interval: Duration::from_secs(5), ..config.clone() };
    let (stop, tasks, _) = start_bus(databases, subscription, config, travel).await?;
    let publisher = databases.pool(PUBLISHER)?.clone();
    // Warm up first: the first events wait for connections to be made (on Kafka, the
    // producer's and the consumer's to the broker, half a second), which is not the steady
    // latency this measures.
    const WARM_UP: usize = 20;
    for i in 0..WARM_UP {
        append(&publisher, &[Tick { key: format!("warm{i}") }]).await?;
    }
    let warming = Instant::now();
    while started_at.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.len() < WARM_UP {
        anyhow::ensure!(warming.elapsed() < Duration::from_secs(60), "the warm-up events were not handled in a minute");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut committed: HashMap<Uuid, Instant> = HashMap::new();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    for i in 0..rate * seconds {
        ticker.tick().await;
        let ids = append(&publisher, &[Tick { key: format!("k{}", i % 64) }]).await?;
        committed.insert(ids[0], Instant::now());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    tasks.join().await;
    let started = started_at.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let mut samples: Vec<f64> = committed
        .iter()
        .filter_map(|(id, at)| started.get(id).map(|s| s.saturating_duration_since(*at).as_secs_f64() * 1000.0))
        .collect();
    anyhow::ensure!(!samples.is_empty(), "no event was handled in the latency run");
    samples.sort_by(f64::total_cmp);
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Ok((pick(0.50), pick(0.99), samples.len()))
}

async fn start_bus(
    databases: &Databases,
    subscription: Subscription,
    config: BusConfig,
    travel: &Travel,
) -> anyhow::Result<(CancellationToken, platform::bus::BusTasks, Metrics)> {
    let metrics = Metrics::new();
    let mut builder = BusBuilder::new(config, &metrics);
    if let Travel::Kafka { brokers, .. } = travel {
        let kafka = platform::bus::kafka::KafkaConfig {
            topic_prefix: format!("bench{}", Uuid::now_v7().simple()),
            partitions: i32::from(subscription.partitions),
            client: platform::bus::kafka::KafkaConfig::client_properties(std::env::vars()),
            ..platform::bus::kafka::KafkaConfig::new(brokers.clone())
        };
        // Each run has a topic of its own; its relay starts at the outbox's head, so it
        // forwards that run's events only, not every earlier run's as well.
        sqlx::query("INSERT INTO bus_relay (topic, position) SELECT $1, coalesce(max(position), 0) FROM outbox")
            .bind(kafka.topic(PUBLISHER))
            .execute(databases.pool(PUBLISHER)?)
            .await?;
        builder = builder.with_kafka(kafka)?;
    }
    let bus = builder
        .publisher(PUBLISHER, databases.pool(PUBLISHER)?.clone())
        .subscription(SUBSCRIBER, databases.pool(SUBSCRIBER)?.clone(), subscription)?
        .build();
    let stop = CancellationToken::new();
    let tasks = bus.start(stop.clone()).await?;
    Ok((stop, tasks, metrics))
}

async fn append(pool: &PgPool, ticks: &[Tick]) -> anyhow::Result<Vec<Uuid>> {
    let mut tx = pool.begin().await?;
    let ids = platform::bus::append_all(&mut tx, ticks, &Metadata::system("bench")).await?;
    tx.commit().await?;
    Ok(ids)
}
