//! Subcommands besides `serve`.

use std::sync::Arc;

use anyhow::Context;

use platform::Module;
use platform::bus::listener::Wakeups;
use platform::bus::{Bus, DeadLetter};
use platform::db::{ModuleSchema, migrate};
use platform::jobs::{FailedJob, failed_jobs};
use platform::metrics::Metrics;

use platform::remote::ServiceKeys;

use crate::config::{BusAction, Config, DatabaseAction, JobsAction, MigrateAction, ModulesAction, ServiceKeysAction};
use crate::database::Backing;
use crate::modules;
use crate::server::assemble_bus;

/// `bulkhead migrate up|down|status [--module m]`. The jobs storage counts as module `jobs`:
/// it is migrated and listed with the modules, or alone with `--module jobs`.
///
/// # Errors
/// Unknown module, unreachable database, or a failing migration.
pub async fn migrate(config: &Config, action: MigrateAction) -> anyhow::Result<()> {
    let hosted = modules::hosted(&config.modules)?;
    let schemas: Arc<[ModuleSchema]> = hosted.iter().map(|d| d.schema).collect();
    let module = match &action {
        MigrateAction::Up { module } | MigrateAction::Status { module } => module.as_deref(),
        MigrateAction::Down { module, .. } => Some(module.as_str()),
    };
    let targets = match module {
        None => Targets { schemas: schemas.to_vec(), jobs: true },
        Some(migrate::JOBS) => Targets { schemas: Vec::new(), jobs: true },
        Some(name) => Targets {
            schemas: vec![
                *schemas
                    .iter()
                    .find(|s| s.name == name)
                    .ok_or_else(|| anyhow::anyhow!("no module `{name}` here (hosted: {})", names(&schemas)))?,
            ],
            jobs: false,
        },
    };
    if matches!(action, MigrateAction::Down { .. }) {
        anyhow::ensure!(!targets.jobs, "the jobs schema's migrations (apalis') cannot be reverted");
    }
    let backing = Backing::connect(config, &schemas).await?;
    let outcome = run(&backing, &targets, action).await;
    backing.close().await?;
    outcome
}

/// What a migrate command works on.
struct Targets {
    schemas: Vec<ModuleSchema>,
    /// The jobs storage too.
    jobs: bool,
}

async fn run(backing: &Backing, targets: &Targets, action: MigrateAction) -> anyhow::Result<()> {
    let databases = &backing.databases;
    match action {
        MigrateAction::Up { .. } => {
            if targets.schemas.is_empty() {
                databases.jobs_pool()?;
                databases.migrate_jobs().await?;
            } else {
                // Migrates the jobs storage too (where this process has one): every module
                // role gets the right to enqueue once it exists.
                databases.migrate(&targets.schemas).await?;
            }
            for schema in &targets.schemas {
                println!("{}: up to date", schema.name);
            }
            if targets.jobs && databases.jobs_pool().is_ok() {
                println!("{}: up to date", migrate::JOBS);
            }
        }
        MigrateAction::Down { steps, .. } => {
            for schema in &targets.schemas {
                let reverted = migrate::down(databases.pool(schema.name)?, schema, steps).await?;
                if reverted.is_empty() {
                    println!("{}: nothing to revert", schema.name);
                }
                for migration in reverted {
                    println!(
                        "{}: reverted {} {:04} {}",
                        migration.module, migration.stream, migration.version, migration.description
                    );
                }
            }
        }
        MigrateAction::Status { .. } => {
            println!("{:<16} {:<9} {:>14}  {:<40} APPLIED", "MODULE", "STREAM", "VERSION", "NAME");
            let mut states = Vec::new();
            for schema in &targets.schemas {
                states.extend(migrate::status(databases.pool(schema.name)?, schema).await?);
            }
            if targets.jobs {
                // Alone (`--module jobs`), a missing jobs database is the error to report.
                match databases.jobs_pool() {
                    Ok(jobs) => states.extend(migrate::jobs_status(jobs).await?),
                    Err(error) if targets.schemas.is_empty() => return Err(error),
                    Err(_) => {}
                }
            }
            for m in &states {
                let applied = m.applied_at.map_or_else(|| "pending".to_owned(), |t| t.to_rfc3339());
                println!(
                    "{:<16} {:<9} {:>14}  {:<40} {applied}",
                    m.module,
                    m.stream,
                    format!("{:04}", m.version),
                    m.description
                );
            }
            if states.is_empty() {
                println!("(no modules compiled in or selected)");
            }
        }
    }
    Ok(())
}

fn names(schemas: &[ModuleSchema]) -> String {
    if schemas.is_empty() { "none".to_owned() } else { schemas.iter().map(|s| s.name).collect::<Vec<_>>().join(", ") }
}

/// `bulkhead bus status|dead-letters|replay|rewind`: the same operations as the admin API,
/// on a bus built for this process's modules but not started.
///
/// # Errors
/// Unreachable database, unknown subscription or dead letter, a replay that fails again.
pub async fn bus(config: &Config, action: BusAction) -> anyhow::Result<()> {
    let hosted = modules::hosted(&config.modules)?;
    let schemas: Arc<[ModuleSchema]> = hosted.iter().map(|d| d.schema).collect();
    let backing = Backing::connect(config, &schemas).await?;
    let outcome = async {
        // Reads and repairs only: the schema must already be migrated (`serve` or `migrate up`).
        for schema in schemas.iter() {
            anyhow::ensure!(
                migrate::is_current(backing.databases.pool(schema.name)?, schema).await?,
                "the database of `{}` has pending migrations; run `bulkhead migrate up` first",
                schema.name
            );
        }
        let modules: Vec<Arc<dyn Module>> = Vec::new();
        let bus = assemble_bus(config, &backing, &schemas, &modules, &Metrics::new(), &Wakeups::default())?;
        run_bus(&bus, action).await
    }
    .await;
    backing.close().await?;
    outcome
}

async fn run_bus(bus: &Bus, action: BusAction) -> anyhow::Result<()> {
    match action {
        BusAction::Status => {
            println!(
                "{:<32} {:>4} {:<14} {:>10} {:>10} {:>8} {:>8} {:>6}  LAST ERROR",
                "SUBSCRIPTION", "PART", "SOURCE", "POSITION", "HEAD", "LAG", "ATTEMPTS", "DEAD"
            );
            let statuses = bus.status().await?;
            for s in &statuses {
                println!(
                    "{:<32} {:>4} {:<14} {:>10} {:>10} {:>8} {:>8} {:>6}  {}",
                    s.subscription,
                    format!("{}/{}", s.partition, s.partitions),
                    s.source,
                    s.position,
                    s.head,
                    s.lag,
                    s.attempts,
                    s.dead_letters,
                    s.last_error.as_deref().unwrap_or("-")
                );
            }
            if statuses.is_empty() {
                println!("(no subscriptions hosted)");
            }
        }
        BusAction::DeadLetters { subscription, include_replayed } => {
            const SHOWN: usize = 1000;
            let letters = bus.dead_letters(subscription.as_deref(), include_replayed, None, SHOWN + 1).await?;
            for letter in letters.iter().take(SHOWN) {
                print_dead_letter(letter);
            }
            if letters.len() > SHOWN {
                println!("(the oldest {SHOWN} shown; use the admin API to page through the rest)");
            } else {
                println!("{} dead letter(s)", letters.len());
            }
        }
        BusAction::Replay { id } => {
            let letter = bus.replay(id).await?;
            println!(
                "replayed {} ({} at position {} of {})",
                letter.id, letter.event_type, letter.position, letter.source
            );
        }
        BusAction::Rewind { subscription, to } => {
            let cursor = bus.rewind(&subscription, to).await?;
            println!("{subscription}: every partition now resumes after position {cursor}");
        }
    }
    Ok(())
}

fn print_dead_letter(letter: &DeadLetter) {
    println!(
        "{}  {}  {} #{} (key {})  attempts {}  at {}{}\n    {}",
        letter.id,
        letter.subscription,
        letter.event_type,
        letter.position,
        letter.aggregate_key,
        letter.attempts,
        letter.dead_lettered_at.to_rfc3339(),
        letter.replayed_at.map_or_else(String::new, |t| format!("  replayed {}", t.to_rfc3339())),
        letter.error
    );
}

/// `bulkhead jobs failed [--queue q]`: the same list as the admin API.
///
/// # Errors
/// No jobs database, or an unreachable one.
pub async fn jobs(config: &Config, action: JobsAction) -> anyhow::Result<()> {
    let hosted = modules::hosted(&config.modules)?;
    let schemas: Arc<[ModuleSchema]> = hosted.iter().map(|d| d.schema).collect();
    let backing = Backing::connect(config, &schemas).await?;
    let outcome = async {
        let pool = backing.databases.jobs_pool()?;
        anyhow::ensure!(
            migrate::jobs_is_current(pool).await?,
            "the jobs schema has pending migrations; run `bulkhead migrate up` first"
        );
        match action {
            JobsAction::Failed { queue } => {
                const SHOWN: usize = 1000;
                let failed = failed_jobs(pool, queue.as_deref(), None, SHOWN + 1).await?;
                for job in failed.iter().take(SHOWN) {
                    print_failed_job(job);
                }
                if failed.len() > SHOWN {
                    println!("(the oldest {SHOWN} shown; use the admin API to page through the rest)");
                } else {
                    println!("{} failed job(s)", failed.len());
                }
            }
        }
        Ok(())
    }
    .await;
    backing.close().await?;
    outcome
}

fn print_failed_job(job: &FailedJob) {
    println!(
        "{}  {}  {}  attempts {}/{}  at {}{}\n    {}\n    {}",
        job.id,
        job.queue,
        job.status,
        job.attempts,
        job.max_attempts,
        job.failed_at.to_rfc3339(),
        job.idempotency_key.as_deref().map_or_else(String::new, |key| format!("  key {key}")),
        job.error.as_deref().unwrap_or("-"),
        job.payload
    );
}

/// `bulkhead healthcheck`: `GET /health` on the server of `BULKHEAD_ADDR` (an unspecified
/// address, such as `0.0.0.0`, is asked on loopback), 2 s at most.
///
/// # Errors
/// No answer in time, or an answer other than 200.
pub async fn healthcheck(config: &Config) -> anyhow::Result<()> {
    let mut address = config.addr;
    if address.ip().is_unspecified() {
        address.set_ip(match address {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let url = format!("http://{address}/health");
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .no_proxy()
        .build()
        .context("building the health check's HTTP client")?;
    let response = client.get(&url).send().await.with_context(|| format!("GET {url}"))?;
    anyhow::ensure!(response.status() == reqwest::StatusCode::OK, "GET {url} answered {}", response.status());
    Ok(())
}

/// `bulkhead service-keys generate [--dir d]`.
///
/// # Errors
/// The directory or a key cannot be written.
pub fn service_keys(config: &Config, action: ServiceKeysAction) -> anyhow::Result<()> {
    match action {
        ServiceKeysAction::Generate { dir } => {
            let dir = dir.unwrap_or_else(|| config.service_keys_dir());
            let written = ServiceKeys::generate(&dir, &modules::ALL)?;
            for module in modules::ALL {
                let state = if written.iter().any(|w| w == module) { "generated" } else { "kept" };
                println!("{module:<14} {state:<10} {}", dir.join(format!("{module}.key.pem")).display());
            }
            println!(
                "\nGive each process the private keys (*.key.pem) of the modules it hosts and every public key (*.pub.pem)."
            );
            Ok(())
        }
    }
}

/// `bulkhead database start|stop`: the embedded server shared by the processes of a split on
/// one machine. `start` prints `DATABASE_URL=…` (for `export`), and nothing else on stdout.
///
/// # Errors
/// No server binaries, an unusable data dir, or a server that does not start or stop.
pub async fn database(config: &Config, action: DatabaseAction) -> anyhow::Result<()> {
    let mut options = platform::db::EmbeddedOptions::new(&config.data_dir);
    options.bin_dir.clone_from(&config.pg_bin_dir);
    // Several processes, each with pools of its own, share this server: PostgreSQL's default
    // of 100 connections is too few for a split of five.
    options.settings.push(("max_connections".to_owned(), "400".to_owned()));
    match action {
        DatabaseAction::Start => {
            let address = platform::db::EmbeddedPostgres::ensure_running_detached(&options).await?;
            let url = crate::database::ensure_bulkhead_database(&address).await?;
            println!("DATABASE_URL={url}");
            eprintln!(
                "PostgreSQL runs in {} until `bulkhead database stop`.",
                config.data_dir.join("postgres").display()
            );
        }
        DatabaseAction::Stop => {
            let stopped = platform::db::EmbeddedPostgres::stop_detached(&options).await?;
            eprintln!("{}", if stopped { "PostgreSQL stopped." } else { "PostgreSQL was not running." });
        }
    }
    Ok(())
}

/// `bulkhead modules map [--output docs/modules.md] [--check]`: the module map of the modules
/// compiled in, from their manifests; no database needed.
///
/// # Errors
/// The file cannot be read or written, or (`--check`) it is stale.
pub fn modules(action: ModulesAction) -> anyhow::Result<()> {
    match action {
        ModulesAction::Map { output, check } => {
            let map = crate::map::render(&modules::compiled());
            if check {
                let current =
                    std::fs::read_to_string(&output).with_context(|| format!("reading {}", output.display()))?;
                anyhow::ensure!(
                    current == map,
                    "{} is stale: run `bulkhead modules map` and commit the result",
                    output.display()
                );
                println!("{}: up to date", output.display());
            } else {
                std::fs::write(&output, &map).with_context(|| format!("writing {}", output.display()))?;
                println!("wrote {}", output.display());
            }
            Ok(())
        }
    }
}
