//! Configuration from flags and environment variables (clap), validated at start-up. Every
//! error names the variable to fix.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use axum::http::HeaderValue;
use clap::{Args, Parser, Subcommand};
use platform::bus::{BusConfig, RewindTarget};
use platform::jobs::JobsConfig;
use platform::telemetry::LogFormat;
use secrecy::SecretString;

#[derive(Debug, Parser)]
#[command(
    name = "bulkhead",
    version,
    about = "Bulkhead: a commerce backend as a modular monolith with extractable modules."
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Apply, revert or list database migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Inspect and repair the event bus: status, dead letters, replay, rewind.
    Bus {
        #[command(subcommand)]
        action: BusAction,
    },
    /// Inspect background jobs: the ones that failed for good.
    Jobs {
        #[command(subcommand)]
        action: JobsAction,
    },
    /// Ask the server on `BULKHEAD_ADDR` whether it is alive (`GET /health`): exit 0 if it
    /// answers 200 within 2 s, else 1. For container health checks, where no shell or curl is.
    Healthcheck,
}

#[derive(Debug, Subcommand)]
pub enum JobsAction {
    /// Jobs that will not run again (aborted, or out of attempts), with their last error.
    Failed {
        /// Only this queue's, e.g. `orders.payment_timeout`.
        #[arg(long)]
        queue: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BusAction {
    /// Every subscription partition: position, lag, owner, failures, dead letters.
    Status,
    /// Dead letters waiting for a replay, with their errors.
    DeadLetters {
        /// Only this subscription's.
        #[arg(long)]
        subscription: Option<String>,
        /// Include letters already replayed.
        #[arg(long)]
        include_replayed: bool,
    },
    /// Run a dead letter's event through its handler again.
    Replay {
        /// The dead letter's id.
        id: uuid::Uuid,
    },
    /// Move a subscription back (or forward) so handling resumes at a position or time.
    Rewind {
        subscription: String,
        /// A position (the next event handled) or an RFC 3339 time.
        #[arg(long)]
        to: RewindTarget,
    },
}

#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// Apply every pending migration.
    Up {
        /// Only this module.
        #[arg(long)]
        module: Option<String>,
    },
    /// Revert the most recent migrations of one module (the jobs schema's cannot be).
    Down {
        #[arg(long)]
        module: String,
        /// How many migrations to revert.
        #[arg(long, default_value_t = 1)]
        steps: usize,
    },
    /// List every migration and whether it is applied.
    Status {
        /// Only this module.
        #[arg(long)]
        module: Option<String>,
    },
}

/// Settings shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(long, env = "BULKHEAD_ADDR", default_value = "127.0.0.1:8080", global = true, value_parser = parse_addr)]
    pub addr: SocketAddr,

    /// Directory for local state: the embedded PostgreSQL cluster, signing keys, mail.
    #[arg(long, env = "BULKHEAD_DATA_DIR", default_value = ".bulkhead", global = true)]
    pub data_dir: PathBuf,

    /// PostgreSQL URL with the right to create roles (admin). Unset: an embedded server.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true, value_parser = |v: &str| parse_postgres_url(v, "DATABASE_URL"))]
    pub database_url: Option<SecretString>,

    /// PostgreSQL URL of the jobs storage (schema `apalis`), for deployments without
    /// DATABASE_URL; its role owns the schema or may create it.
    #[arg(long, env = "BULKHEAD_JOBS_DATABASE_URL", global = true, hide_env_values = true, value_parser = |v: &str| parse_postgres_url(v, "BULKHEAD_JOBS_DATABASE_URL"))]
    pub jobs_database_url: Option<SecretString>,

    /// Directory holding `initdb` and `postgres` for the embedded server (else searched).
    #[arg(long, env = "BULKHEAD_PG_BIN_DIR", global = true)]
    pub pg_bin_dir: Option<PathBuf>,

    /// Log format: `pretty` or `json` (default: pretty in a terminal, json otherwise).
    #[arg(long, env = "LOG_FORMAT", global = true)]
    pub log_format: Option<LogFormat>,

    /// Modules this process hosts, comma-separated (default: every compiled-in module).
    #[arg(long, env = "BULKHEAD_MODULES", global = true, value_delimiter = ',')]
    pub modules: Vec<String>,

    /// Email of the admin the users module creates on first start.
    #[arg(long, env = "BULKHEAD_ADMIN_EMAIL", global = true, value_parser = parse_admin_email)]
    pub admin_email: Option<String>,

    /// Password of that admin (12–128 characters); unset: a random one, printed once.
    #[arg(long, env = "BULKHEAD_ADMIN_PASSWORD", global = true, hide_env_values = true, value_parser = parse_admin_password)]
    pub admin_password: Option<SecretString>,

    /// Directory of the Ed25519 keys that sign access tokens (default: `<data dir>/keys`).
    /// Files are PKCS#8 PEM named `<created, unix ms>.ed25519.pem`; the newest signs.
    #[arg(long, env = "BULKHEAD_JWT_KEYS_DIR", global = true)]
    pub jwt_keys_dir: Option<PathBuf>,

    /// Base URL of the pages people open from emails (verification and reset links).
    #[arg(long, env = "BULKHEAD_PUBLIC_URL", default_value = "http://localhost:8080", global = true, value_parser = parse_public_url)]
    pub public_url: String,

    /// Issuer (`iss`) of access tokens.
    #[arg(long, env = "BULKHEAD_JWT_ISSUER", default_value = "bulkhead", global = true)]
    pub jwt_issuer: String,

    /// Audience (`aud`) of access tokens for the public API.
    #[arg(long, env = "BULKHEAD_JWT_AUDIENCE", default_value = "bulkhead-api", global = true)]
    pub jwt_audience: String,

    /// Connections per module pool.
    #[arg(long, env = "BULKHEAD_DB_POOL_SIZE", default_value = "10", global = true, value_parser = parse_pool_size)]
    pub db_pool_size: u32,

    /// Largest accepted request body, e.g. `256KiB`, `1MiB` or a byte count.
    #[arg(long, env = "BULKHEAD_BODY_LIMIT", default_value = "256KiB", global = true, value_parser = parse_size)]
    pub body_limit: usize,

    /// Longest time a request may take, e.g. `30s` or `500ms`.
    #[arg(long, env = "BULKHEAD_REQUEST_TIMEOUT", default_value = "30s", global = true, value_parser = parse_request_timeout)]
    pub request_timeout: Duration,

    /// Time to drain in-flight requests on shutdown before closing anyway.
    #[arg(long, env = "BULKHEAD_SHUTDOWN_TIMEOUT", default_value = "30s", global = true, value_parser = parse_shutdown_timeout)]
    pub shutdown_timeout: Duration,

    /// Sustained requests per second per client address on `/api` (0 turns limiting off).
    #[arg(long, env = "BULKHEAD_RATE_LIMIT_PER_SECOND", default_value = "100", global = true, value_parser = parse_rate)]
    pub rate_limit_per_second: u32,

    /// Requests a client may send at once before the sustained rate applies.
    #[arg(long, env = "BULKHEAD_RATE_LIMIT_BURST", default_value = "200", global = true, value_parser = parse_burst)]
    pub rate_limit_burst: u32,

    /// How long published events are kept after sequencing, e.g. `7d` or `36h`.
    #[arg(long, env = "BULKHEAD_BUS_RETENTION", default_value = "7d", global = true, value_parser = parse_bus_retention)]
    pub bus_retention: Duration,

    /// How often published events past the retention are deleted, e.g. `1h` (once per period
    /// across all processes, as a job).
    #[arg(long, env = "BULKHEAD_BUS_RETENTION_INTERVAL", default_value = "1h", global = true, value_parser = parse_bus_retention_interval)]
    pub bus_retention_interval: Duration,

    /// Longest time the bus waits before looking for work when notifications are lost.
    #[arg(long, env = "BULKHEAD_BUS_POLL_INTERVAL", default_value = "1s", global = true, value_parser = parse_bus_poll_interval)]
    pub bus_poll_interval: Duration,

    /// How long a reservation holds an order's units before they are free again (keep it
    /// longer than the payment timeout, so that one normally wins).
    #[arg(long, env = "BULKHEAD_INVENTORY_RESERVATION_TTL", default_value = "30m", global = true, value_parser = parse_reservation_ttl)]
    pub inventory_reservation_ttl: Duration,

    /// Apply pending migrations when `serve` starts. `false` leaves them to `bulkhead migrate
    /// up` (a Kubernetes Job): the server then waits, answering `/health/ready` with 503
    /// `migrations pending`, until they are applied, so replicas never race a migration.
    #[arg(long, env = "BULKHEAD_MIGRATE_ON_START", default_value_t = true, global = true, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,

    /// Fill an empty catalogue with demo products and stock on start (`false` to start empty).
    #[arg(long, env = "BULKHEAD_DEMO_DATA", default_value_t = true, global = true, action = clap::ArgAction::Set)]
    pub demo_data: bool,

    /// How long an order whose stock is reserved waits for payment before it is cancelled.
    #[arg(long, env = "BULKHEAD_ORDERS_PAYMENT_TIMEOUT", default_value = "15m", global = true, value_parser = parse_payment_timeout)]
    pub orders_payment_timeout: Duration,

    /// The payment gateway payments calls. `sandbox` (the only one built in) behaves like a
    /// card processor's test mode: the payment method token picks the outcome (docs/payments.md).
    #[arg(long, env = "BULKHEAD_PAYMENTS_GATEWAY", default_value = "sandbox", global = true, value_enum)]
    pub payments_gateway: PaymentsGateway,

    /// Time added to every sandbox gateway call, as a real network and processor would.
    #[arg(long, env = "BULKHEAD_PAYMENTS_SANDBOX_LATENCY", default_value = "50ms", global = true, value_parser = parse_sandbox_latency)]
    pub payments_sandbox_latency: Duration,

    /// Longest a gateway call may take before it counts as a timeout (and is retried with the
    /// same idempotency key).
    #[arg(long, env = "BULKHEAD_PAYMENTS_GATEWAY_TIMEOUT", default_value = "10s", global = true, value_parser = parse_gateway_timeout)]
    pub payments_gateway_timeout: Duration,

    /// A payment pending or authorized for longer than this is looked up at the gateway and
    /// settled (reconciliation runs every minute).
    #[arg(long, env = "BULKHEAD_PAYMENTS_RECONCILE_AFTER", default_value = "5m", global = true, value_parser = parse_reconcile_after)]
    pub payments_reconcile_after: Duration,

    /// Secret of the gateway's webhook signatures (default: one generated at start, which
    /// suits one process; replicas must share one).
    #[arg(long, env = "BULKHEAD_PAYMENTS_WEBHOOK_SECRET", global = true, hide_env_values = true, value_parser = parse_webhook_secret)]
    pub payments_webhook_secret: Option<SecretString>,

    /// Where the sandbox gateway delivers its webhooks (default: this process's own address).
    #[arg(long, env = "BULKHEAD_PAYMENTS_WEBHOOK_URL", global = true, value_parser = parse_webhook_url)]
    pub payments_webhook_url: Option<String>,

    /// The shop's name in the messages notifications sends.
    #[arg(long, env = "BULKHEAD_SHOP_NAME", default_value = "Bulkhead", global = true)]
    pub shop_name: String,

    /// The `From` of every email, e.g. `Shop <orders@shop.example>`.
    #[arg(long, env = "BULKHEAD_MAIL_FROM", default_value = "Bulkhead <no-reply@bulkhead.localhost>", global = true)]
    pub mail_from: String,

    /// Where email goes: `mailbox` (one `.eml` file per message under BULKHEAD_MAILBOX_DIR;
    /// nothing leaves the machine) or `smtp` (BULKHEAD_SMTP_*).
    #[arg(long, env = "BULKHEAD_MAIL_TRANSPORT", default_value = "mailbox", global = true, value_enum)]
    pub mail_transport: MailTransportKind,

    /// The file mailbox's directory (default: `<data dir>/mailbox`).
    #[arg(long, env = "BULKHEAD_MAILBOX_DIR", global = true)]
    pub mailbox_dir: Option<PathBuf>,

    /// SMTP server host (required with BULKHEAD_MAIL_TRANSPORT=smtp).
    #[arg(long, env = "BULKHEAD_SMTP_HOST", global = true)]
    pub smtp_host: Option<String>,

    /// SMTP server port (required with BULKHEAD_MAIL_TRANSPORT=smtp; usually 587 for
    /// `starttls`, 465 for `tls`, 25 for `none`).
    #[arg(long, env = "BULKHEAD_SMTP_PORT", global = true)]
    pub smtp_port: Option<u16>,

    /// How the SMTP connection is protected: `starttls`, `tls` or `none` (a relay on the same
    /// host or a test server only).
    #[arg(long, env = "BULKHEAD_SMTP_TLS", default_value = "starttls", global = true, value_enum)]
    pub smtp_tls: SmtpTlsMode,

    /// SMTP user name (with BULKHEAD_SMTP_PASSWORD, or neither).
    #[arg(long, env = "BULKHEAD_SMTP_USERNAME", global = true)]
    pub smtp_username: Option<String>,

    /// SMTP password.
    #[arg(long, env = "BULKHEAD_SMTP_PASSWORD", global = true, hide_env_values = true, value_parser = parse_secret)]
    pub smtp_password: Option<SecretString>,

    /// Longest wait for the SMTP server on each command.
    #[arg(long, env = "BULKHEAD_SMTP_TIMEOUT", default_value = "30s", global = true, value_parser = parse_smtp_timeout)]
    pub smtp_timeout: Duration,

    /// Let webhook endpoints point at loopback, private and link-local addresses (development
    /// and tests only: it opens the server to SSRF).
    #[arg(long, env = "BULKHEAD_WEBHOOKS_ALLOW_PRIVATE_TARGETS", default_value_t = false, global = true, action = clap::ArgAction::Set)]
    pub webhooks_allow_private_targets: bool,

    /// Longest a webhook receiver may take to answer one delivery.
    #[arg(long, env = "BULKHEAD_WEBHOOK_TIMEOUT", default_value = "10s", global = true, value_parser = parse_webhook_timeout)]
    pub webhook_timeout: Duration,

    /// A webhook endpoint is disabled after this many failed delivery attempts in a row (a
    /// success resets the count).
    #[arg(long, env = "BULKHEAD_WEBHOOK_DISABLE_AFTER", default_value = "15", global = true, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub webhook_disable_after: u32,

    /// Origins allowed to call the API from a browser, comma-separated (default: none).
    #[arg(long, env = "BULKHEAD_CORS_ORIGINS", global = true, value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<HeaderValue>,
}

impl Config {
    /// The configuration a user gets with no flags, plus whatever the environment sets.
    ///
    /// # Errors
    /// An environment variable with an invalid value.
    pub fn from_env() -> Result<Self, clap::Error> {
        Cli::try_parse_from(["bulkhead"]).map(|cli| cli.config)
    }

    /// Where the token signing keys live.
    pub fn jwt_keys_dir(&self) -> PathBuf {
        self.jwt_keys_dir.clone().unwrap_or_else(|| self.data_dir.join("keys"))
    }

    pub fn log_format(&self) -> LogFormat {
        self.log_format.unwrap_or_else(LogFormat::detect)
    }

    /// The event bus's tuning.
    pub fn bus(&self) -> BusConfig {
        BusConfig {
            retention: self.bus_retention,
            retention_every: self.bus_retention_interval,
            poll_interval: self.bus_poll_interval,
            ..BusConfig::default()
        }
    }

    /// The jobs runtime's tuning: running jobs get the shutdown timeout to finish.
    pub fn jobs(&self) -> JobsConfig {
        JobsConfig { shutdown_timeout: self.shutdown_timeout, ..JobsConfig::default() }
    }

    pub fn rate_limit(&self) -> Option<(NonZeroU32, NonZeroU32)> {
        Some((NonZeroU32::new(self.rate_limit_per_second)?, NonZeroU32::new(self.rate_limit_burst)?))
    }

    /// `BULKHEAD_<M>_DATABASE_URL` for each module that has one.
    ///
    /// # Errors
    /// A URL that does not parse, naming its variable.
    pub fn module_database_urls(&self, modules: &[&str]) -> anyhow::Result<BTreeMap<String, SecretString>> {
        let mut urls = BTreeMap::new();
        for module in modules {
            let variable = format!("BULKHEAD_{}_DATABASE_URL", module.to_uppercase());
            if let Ok(value) = std::env::var(&variable) {
                let url = parse_postgres_url(&value, &variable).map_err(anyhow::Error::msg)?;
                urls.insert((*module).to_owned(), url);
            }
        }
        Ok(urls)
    }
}

fn parse_addr(value: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|_| "BULKHEAD_ADDR must be an IP address and port such as 127.0.0.1:8080 or 0.0.0.0:8080".to_owned())
}

fn parse_postgres_url(value: &str, variable: &str) -> Result<SecretString, String> {
    let url = url::Url::parse(value).map_err(|e| format!("{variable} is not a URL ({e})"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(format!("{variable} must start with postgres:// or postgresql://"));
    }
    Ok(SecretString::from(value.to_owned()))
}

fn parse_count(value: &str, variable: &str, range: std::ops::RangeInclusive<u32>) -> Result<u32, String> {
    value
        .trim()
        .parse()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| format!("{variable} must be a whole number from {} to {}", range.start(), range.end()))
}

fn parse_pool_size(value: &str) -> Result<u32, String> {
    parse_count(value, "BULKHEAD_DB_POOL_SIZE", 1..=500)
}

fn parse_rate(value: &str) -> Result<u32, String> {
    parse_count(value, "BULKHEAD_RATE_LIMIT_PER_SECOND", 0..=1_000_000)
}

fn parse_burst(value: &str) -> Result<u32, String> {
    parse_count(value, "BULKHEAD_RATE_LIMIT_BURST", 1..=1_000_000)
}

fn parse_request_timeout(value: &str) -> Result<Duration, String> {
    parse_duration(value).map_err(|e| format!("BULKHEAD_REQUEST_TIMEOUT: {e}"))
}

fn parse_shutdown_timeout(value: &str) -> Result<Duration, String> {
    parse_duration(value).map_err(|e| format!("BULKHEAD_SHUTDOWN_TIMEOUT: {e}"))
}

fn parse_bus_retention(value: &str) -> Result<Duration, String> {
    parse_duration(value).map_err(|e| format!("BULKHEAD_BUS_RETENTION: {e}"))
}

fn parse_bus_retention_interval(value: &str) -> Result<Duration, String> {
    parse_duration(value).map_err(|e| format!("BULKHEAD_BUS_RETENTION_INTERVAL: {e}"))
}

fn parse_reservation_ttl(value: &str) -> Result<Duration, String> {
    match parse_duration(value) {
        Ok(ttl) if ttl >= Duration::from_secs(1) => Ok(ttl),
        Ok(_) => Err("BULKHEAD_INVENTORY_RESERVATION_TTL must be at least 1s".to_owned()),
        Err(e) => Err(format!("BULKHEAD_INVENTORY_RESERVATION_TTL: {e}")),
    }
}

fn parse_payment_timeout(value: &str) -> Result<Duration, String> {
    match parse_duration(value) {
        Ok(timeout) if timeout >= Duration::from_secs(1) => Ok(timeout),
        Ok(_) => Err("BULKHEAD_ORDERS_PAYMENT_TIMEOUT must be at least 1s".to_owned()),
        Err(e) => Err(format!("BULKHEAD_ORDERS_PAYMENT_TIMEOUT: {e}")),
    }
}

/// Where email goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MailTransportKind {
    Mailbox,
    Smtp,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SmtpTlsMode {
    None,
    Starttls,
    Tls,
}

fn parse_secret(value: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(value.to_owned()))
}

fn parse_smtp_timeout(value: &str) -> Result<Duration, String> {
    match parse_duration(value) {
        Ok(timeout) if timeout >= Duration::from_secs(1) => Ok(timeout),
        Ok(_) => Err("BULKHEAD_SMTP_TIMEOUT must be at least 1s".to_owned()),
        Err(e) => Err(format!("BULKHEAD_SMTP_TIMEOUT: {e}")),
    }
}

fn parse_webhook_timeout(value: &str) -> Result<Duration, String> {
    match parse_duration(value) {
        Ok(timeout) if timeout >= Duration::from_secs(1) && timeout <= Duration::from_secs(60) => Ok(timeout),
        Ok(_) => Err("BULKHEAD_WEBHOOK_TIMEOUT must be between 1s and 60s".to_owned()),
        Err(e) => Err(format!("BULKHEAD_WEBHOOK_TIMEOUT: {e}")),
    }
}

/// The payment gateways built in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PaymentsGateway {
    Sandbox,
}

fn parse_sandbox_latency(value: &str) -> Result<Duration, String> {
    match parse_duration(value) {
        Ok(latency) if latency <= Duration::from_secs(60) => Ok(latency),
        Ok(_) => Err("BULKHEAD_PAYMENTS_SANDBOX_LATENCY must be at most 60s".to_owned()),
        Err(e) => Err(format!("BULKHEAD_PAYMENTS_SANDBOX_LATENCY: {e}")),
    }
}

fn parse_gateway_timeout(value: &str) -> Result<Duration, String> {
    match parse_duration(value) {
        Ok(timeout) if timeout >= Duration::from_millis(100) => Ok(timeout),
        Ok(_) => Err("BULKHEAD_PAYMENTS_GATEWAY_TIMEOUT must be at least 100ms".to_owned()),
        Err(e) => Err(format!("BULKHEAD_PAYMENTS_GATEWAY_TIMEOUT: {e}")),
    }
}

fn parse_reconcile_after(value: &str) -> Result<Duration, String> {
    match parse_duration(value) {
        Ok(after) if after >= Duration::from_secs(1) => Ok(after),
        Ok(_) => Err("BULKHEAD_PAYMENTS_RECONCILE_AFTER must be at least 1s".to_owned()),
        Err(e) => Err(format!("BULKHEAD_PAYMENTS_RECONCILE_AFTER: {e}")),
    }
}

fn parse_webhook_secret(value: &str) -> Result<SecretString, String> {
    if value.chars().count() < 16 {
        return Err("BULKHEAD_PAYMENTS_WEBHOOK_SECRET must be at least 16 characters".to_owned());
    }
    Ok(SecretString::from(value.to_owned()))
}

fn parse_webhook_url(value: &str) -> Result<String, String> {
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(value.to_owned()),
        _ => Err(format!("BULKHEAD_PAYMENTS_WEBHOOK_URL must be an http(s) URL, not `{value}`")),
    }
}

fn parse_bus_poll_interval(value: &str) -> Result<Duration, String> {
    parse_duration(value).map_err(|e| format!("BULKHEAD_BUS_POLL_INTERVAL: {e}"))
}

fn parse_public_url(value: &str) -> Result<String, String> {
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
            Ok(value.trim_end_matches('/').to_owned())
        }
        _ => Err(format!("BULKHEAD_PUBLIC_URL must be an http(s) URL such as https://shop.example.com, not `{value}`")),
    }
}

fn parse_admin_email(value: &str) -> Result<String, String> {
    let valid = value.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    if valid { Ok(value.trim().to_owned()) } else { Err("BULKHEAD_ADMIN_EMAIL must be an email address".to_owned()) }
}

fn parse_admin_password(value: &str) -> Result<SecretString, String> {
    let length = value.chars().count();
    if (12..=128).contains(&length) {
        Ok(SecretString::from(value.to_owned()))
    } else {
        Err("BULKHEAD_ADMIN_PASSWORD must be 12 to 128 characters long".to_owned())
    }
}

fn parse_size(value: &str) -> Result<usize, String> {
    let error = || format!("BULKHEAD_BODY_LIMIT must be a size such as 262144, 256KiB or 1MiB, not `{value}`");
    let trimmed = value.trim();
    let split = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: usize = number.parse().map_err(|_| error())?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "kib" | "k" => 1024,
        "mb" | "mib" | "m" => 1024 * 1024,
        _ => return Err(error()),
    };
    match number.checked_mul(factor) {
        Some(bytes) if bytes > 0 => Ok(bytes),
        _ => Err(error()),
    }
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    let error = || format!("expected a duration such as 30s, 1500ms, 2m, 36h or 7d, not `{value}`");
    let trimmed = value.trim();
    let split = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: u64 = number.parse().map_err(|_| error())?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "" | "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.saturating_mul(60)),
        "h" => Duration::from_secs(number.saturating_mul(3600)),
        "d" => Duration::from_secs(number.saturating_mul(86_400)),
        _ => return Err(error()),
    };
    if duration.is_zero() { Err(error()) } else { Ok(duration) }
}

fn parse_origin(value: &str) -> Result<HeaderValue, String> {
    let url = url::Url::parse(value.trim())
        .map_err(|_| format!("BULKHEAD_CORS_ORIGINS: `{value}` is not an origin such as https://shop.example"))?;
    HeaderValue::from_str(url.origin().ascii_serialization().as_str())
        .map_err(|_| format!("BULKHEAD_CORS_ORIGINS: `{value}` is not a valid origin"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("bulkhead").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_match_the_readme() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.config.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(cli.config.body_limit, 256 * 1024);
        assert_eq!(cli.config.request_timeout, Duration::from_secs(30));
        assert!(cli.command.is_none());
    }

    #[test]
    fn bad_values_name_the_variable_to_fix() {
        for (args, variable) in [
            (&["--addr", "localhost"][..], "BULKHEAD_ADDR"),
            (&["--database-url", "mysql://x"][..], "DATABASE_URL"),
            (&["--jobs-database-url", "mysql://x"][..], "BULKHEAD_JOBS_DATABASE_URL"),
            (&["--bus-retention-interval", "often"][..], "BULKHEAD_BUS_RETENTION_INTERVAL"),
            (&["--admin-password", "short"][..], "BULKHEAD_ADMIN_PASSWORD"),
            (&["--admin-email", "nobody"][..], "BULKHEAD_ADMIN_EMAIL"),
            (&["--body-limit", "lots"][..], "BULKHEAD_BODY_LIMIT"),
            (&["--log-format", "xml"][..], "LOG_FORMAT"),
            (&["--request-timeout", "soon"][..], "BULKHEAD_REQUEST_TIMEOUT"),
            (&["--shutdown-timeout", "0s"][..], "BULKHEAD_SHUTDOWN_TIMEOUT"),
            (&["--db-pool-size", "0"][..], "BULKHEAD_DB_POOL_SIZE"),
            (&["--rate-limit-burst", "0"][..], "BULKHEAD_RATE_LIMIT_BURST"),
            (&["--rate-limit-per-second", "lots"][..], "BULKHEAD_RATE_LIMIT_PER_SECOND"),
        ] {
            let message = parse(args).unwrap_err().to_string();
            assert!(message.contains(variable), "{args:?}: {message}");
        }
    }

    #[test]
    fn sizes_and_durations_parse_with_units() {
        assert_eq!(parse_size("1MiB"), Ok(1024 * 1024));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn bus_subcommands_parse_positions_and_times() {
        let cli = parse(&["bus", "rewind", "inventory.reserve_stock", "--to", "42"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Bus { action: BusAction::Rewind { to: RewindTarget::Position(42), .. } })
        ));
        let cli = parse(&["bus", "rewind", "inventory.reserve_stock", "--to", "2026-11-01T00:00:00Z"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Bus { action: BusAction::Rewind { to: RewindTarget::Time(_), .. } })
        ));
        assert!(parse(&["bus", "rewind", "x", "--to", "yesterday"]).is_err());
    }

    #[test]
    fn jobs_subcommands_parse() {
        let cli = parse(&["jobs", "failed", "--queue", "orders.payment_timeout"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Jobs { action: JobsAction::Failed { queue: Some(ref q) } }) if q == "orders.payment_timeout"
        ));
        assert!(parse(&["jobs"]).is_err(), "an action is required");
    }

    #[test]
    fn serve_migrates_on_start_unless_told_that_a_job_does() {
        assert!(parse(&[]).unwrap().config.migrate_on_start);
        assert!(!parse(&["--migrate-on-start", "false"]).unwrap().config.migrate_on_start);
        assert!(parse(&["--migrate-on-start", "maybe"]).is_err());
    }

    #[test]
    fn healthcheck_is_a_command_of_its_own() {
        assert!(matches!(parse(&["healthcheck"]).unwrap().command, Some(Command::Healthcheck)));
    }

    #[test]
    fn the_bus_retention_interval_reaches_the_bus_and_the_shutdown_timeout_the_jobs() {
        let cli = parse(&["--bus-retention-interval", "15m", "--shutdown-timeout", "5s"]).unwrap();
        assert_eq!(cli.config.bus().retention_every, Duration::from_secs(900));
        assert_eq!(cli.config.jobs().shutdown_timeout, Duration::from_secs(5));
        assert_eq!(parse(&[]).unwrap().config.bus().retention_every, Duration::from_secs(3600));
    }

    #[test]
    fn migrate_subcommands_parse() {
        let cli = parse(&["migrate", "down", "--module", "orders", "--steps", "2"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Migrate { action: MigrateAction::Down { steps: 2, .. } })));
    }
}
