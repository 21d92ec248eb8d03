//! `cargo run --release -p bench -- <benchmark> [--json]`: figures, never assertions.
//!
//! - `bus`: the event bus on a fresh embedded PostgreSQL cluster, plus `pgbench` for scale.
//! - `users`: sign-ins against the real application (argon2id verification per request).
//! - `orders`: order placement and the order saga through the bus, in the real application.
//! - `topology`: the same saga on the monolith and on the split, as separate processes.

mod app;
mod bus;
mod measure;
mod orders;
mod pgbench;
mod processes;
mod topology;
mod users;

use clap::{Parser, Subcommand};

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
        Benchmark::Bus { json, events, rate, seconds, pgbench_seconds, batch } => {
            (json, bus::run(events, rate, seconds, pgbench_seconds, batch).await?)
        }
        Benchmark::Users { json, requests, concurrency } => (json, users::run(requests, concurrency).await?),
        Benchmark::Orders { json, orders, concurrency } => (json, orders::run(orders, concurrency).await?),
        Benchmark::Topology { json, orders, concurrency, port_calls, pgbench_seconds } => {
            let load = topology::Load { orders, concurrency, port_calls, pgbench_seconds };
            (json, topology::run(load).await?)
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
    Ok(())
}
