//! `cargo run --release -p bench -- <benchmark> [--json]`: figures, never assertions.
//!
//! - `bus`: the event bus on a fresh embedded PostgreSQL cluster, plus `pgbench` for scale.
//! - `users`: sign-ins against the real application (argon2id verification per request).
//! - `orders`: order placement and the order saga through the bus, in the real application.
//! - `saga`: what an order costs on a realistic shop: the closed-loop maximum, open-loop
//!   latency, database transactions, row writes and CPU per order, and the idle cost.
//! - `topology`: the same saga on the monolith and on the split, as separate processes.
//! - `chaos`: the crash harness: two replicas, kills, a database restart, outages, then the
//!   invariants; exits non-zero when one is violated.

mod app;
mod bus;
mod chaos;
mod measure;
mod orders;
mod pgbench;
mod processes;
mod saga;
mod topology;
mod users;

use clap::{Parser, Subcommand};
use serde_json::Value;

#[derive(Parser)]
#[command(about = "Bulkhead benchmarks")]
struct Cli {
    #[command(subcommand)]
    benchmark: Benchmark,
}

#[derive(Subcommand)]
enum Benchmark {
    /// Event bus throughput and latency.
    Bus {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Events per throughput run.
        #[arg(long, default_value_t = 40_000)]
        events: u64,
        /// Events per second in the latency run.
        #[arg(long, default_value_t = 200)]
        rate: u64,
        /// Length of the latency run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Seconds of pgbench.
        #[arg(long, default_value_t = 10)]
        pgbench_seconds: u64,
        /// Events per consumer transaction (default: the bus's default).
        #[arg(long)]
        batch: Option<i64>,
        /// How events travel: `postgres` (the outbox) or `kafka` (through the pinned test
        /// broker, which `scripts/kafka-broker` installs and starts).
        #[arg(long, value_enum, default_value_t = bus::Transport::Postgres)]
        transport: bus::Transport,
    },
    /// Sign-ins (`POST /api/v1/auth/login`) against the real app, and one password hash.
    Users {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Sign-ins to measure.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
        requests: u64,
        /// Sign-ins in flight at once.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
        concurrency: u64,
    },
    /// The order saga on a realistic shop: throughput, latency and what each order costs.
    Saga {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        options: saga::Options,
    },
    /// The same saga load on the monolith and on the split (a process per module), with the
    /// port call in process vs over HTTP and memory summed over processes.
    Topology {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Orders to place in each layout.
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        orders: u64,
        /// Placements in flight at once.
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
        concurrency: u64,
        /// Port calls timed in each layout.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        port_calls: u64,
        /// Seconds of pgbench.
        #[arg(long, default_value_t = 10)]
        pgbench_seconds: u64,
    },
    /// Orders placed against the real app, each followed until its stock is reserved.
    Orders {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Orders to place (one unit each).
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        orders: u64,
        /// Placements in flight at once.
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
        concurrency: u64,
    },
    /// The crash harness: orders through two replicas while replicas are killed, PostgreSQL
    /// restarts and the gateway and SMTP go down; then the invariants.
    Chaos {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// The shorter run CI does: 150 orders, outages of 8 s, kills every 2 to 4 s.
        #[arg(long)]
        short: bool,
        /// Orders to place.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        orders: Option<u64>,
        /// Orders placed per second at most.
        #[arg(long, default_value_t = 8.0)]
        rate: f64,
        /// Placements in flight at once.
        #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u64).range(1..=256))]
        concurrency: u64,
        /// Seconds the gateway, and then the SMTP server, stay down.
        #[arg(long)]
        outage: Option<u64>,
        /// The bulkhead binary (default: next to this one, built if missing).
        #[arg(long)]
        bin: Option<std::path::PathBuf>,
        /// Seed of the shoppers' choices (cards, lines, cancellations).
        #[arg(long, default_value_t = 15)]
        seed: u64,
    },
}

fn main() -> std::process::ExitCode {
    // The layouts `topology` measures run this binary as the app.
    if std::env::var_os(processes::APP_MODE).is_some() {
        return bulkhead::process::main();
    }
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(run()));
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let (json, report) = match Cli::parse().benchmark {
        Benchmark::Bus { json, events, rate, seconds, pgbench_seconds, batch, transport } => {
            (json, bus::run(events, rate, seconds, pgbench_seconds, batch, transport).await?)
        }
        Benchmark::Users { json, requests, concurrency } => (json, users::run(requests, concurrency).await?),
        Benchmark::Orders { json, orders, concurrency } => (json, orders::run(orders, concurrency).await?),
        Benchmark::Saga { json, options } => (json, saga::run(options).await?),
        Benchmark::Topology { json, orders, concurrency, port_calls, pgbench_seconds } => {
            let load = topology::Load { orders, concurrency, port_calls, pgbench_seconds };
            (json, topology::run(load).await?)
        }
        Benchmark::Chaos { json, short, orders, rate, concurrency, outage, bin, seed } => {
            let options = chaos::Options {
                orders: orders.unwrap_or(if short { 150 } else { 1000 }),
                rate,
                concurrency: usize::try_from(concurrency)?,
                kill_every: if short { (2.0, 4.0) } else { (3.0, 6.0) },
                outage: std::time::Duration::from_secs(outage.unwrap_or(if short { 8 } else { 20 })),
                bin,
                seed,
                quiet_timeout: std::time::Duration::from_secs(600),
            };
            (json, chaos::run(options).await?)
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for (name, value) in report.as_object().into_iter().flatten() {
            match value.as_array() {
                Some(items) => {
                    println!("{name}");
                    for item in items {
                        println!("  - {}", item.as_str().map_or_else(|| item.to_string(), str::to_owned));
                    }
                }
                None => println!("{name:<32} {value}"),
            }
        }
    }
    if let Some(violations) = report.get("violations").and_then(Value::as_i64)
        && violations > 0
    {
        anyhow::bail!("{violations} invariant violations");
    }
    Ok(())
}
