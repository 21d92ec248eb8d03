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
use platform::settings::{self, count, duration_in, http_url};
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
    /// Run the embedded PostgreSQL on its own, for several processes to share (a split
    /// topology on one machine).
    Database {
        #[command(subcommand)]
        action: DatabaseAction,
    },
    /// Manage the keys modules' processes prove themselves to each other with.
    ServiceKeys {
        #[command(subcommand)]
        action: ServiceKeysAction,
    },
    /// What the compiled-in modules declare about themselves.
    Modules {
        #[command(subcommand)]
        action: ModulesAction,
    },
    /// Ask the server on `BULKHEAD_ADDR` whether it is alive (`GET /health`): exit 0 if it
    /// answers 200 within 2 s, else 1. For container health checks, where no shell or curl is.
    Healthcheck,
}

#[derive(Debug, Subcommand)]
pub enum ModulesAction {
    /// Write the module map (a Mermaid diagram and a table: ports, events with versions, jobs,
    /// schema) from every compiled-in module's manifest. Needs no database.
    Map {
        /// Where to write it.
        #[arg(long, default_value = crate::map::DEFAULT_PATH)]
        output: PathBuf,
        /// Write nothing; fail if the file differs from what would be written.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DatabaseAction {
    /// Start the embedded server in the data dir and leave it running; prints the
    /// `DATABASE_URL` every process of a split on this machine can use.
    Start,
    /// Stop the server `database start` left running.
    Stop,
}

#[derive(Debug, Subcommand)]
pub enum ServiceKeysAction {
    /// Write a key pair (`<module>.key.pem`, `<module>.pub.pem`) for every module that has
    /// none, into BULKHEAD_SERVICE_KEYS_DIR (or `--dir`). Give each process the private keys
    /// of the modules it hosts and every public key.
    Generate {
        /// Where to write them (default: the service keys directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
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

/// The Kafka transport (DESIGN §4, ADR 0025). Client properties beyond these pass through in
/// librdkafka's names: `BULKHEAD_KAFKA_CLIENT_SECURITY_PROTOCOL=SASL_PLAINTEXT` sets
/// `security.protocol`.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka brokers (`host:port,…`); set, events travel through Kafka.
    #[arg(long = "kafka-brokers", env = "BULKHEAD_KAFKA_BROKERS", global = true)]
    pub brokers: Option<String>,

    /// Topics are `<prefix>.<module>.events`.
    #[arg(long = "kafka-topic-prefix", env = "BULKHEAD_KAFKA_TOPIC_PREFIX", default_value = "bulkhead", global = true)]
    pub topic_prefix: String,

    /// Partitions of the topics the relays create; every subscription must use as many (the
    /// modules' use 4).
    #[arg(long = "kafka-partitions", env = "BULKHEAD_KAFKA_PARTITIONS", default_value = "4", global = true, value_parser = clap::value_parser!(i32).range(1..=1024))]
    pub partitions: i32,

    /// Replication factor of the topics the relays create.
    #[arg(long = "kafka-replication", env = "BULKHEAD_KAFKA_REPLICATION", default_value = "1", global = true, value_parser = clap::value_parser!(i32).range(1..=16))]
    pub replication: i32,
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

    /// Apply pending migrations when `serve` starts. `false` leaves them to `bulkhead migrate
    /// up` (a Kubernetes Job): the server then waits, answering `/health/ready` with 503
    /// `migrations pending`, until they are applied, so replicas never race a migration.
    #[arg(long, env = "BULKHEAD_MIGRATE_ON_START", default_value_t = true, global = true, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,

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

    /// Origins allowed to call the API from a browser, comma-separated (default: none).
    #[arg(long, env = "BULKHEAD_CORS_ORIGINS", global = true, value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<HeaderValue>,

    /// Addresses (IPs or CIDRs, comma-separated) of proxies whose `X-Forwarded-For` is
    /// believed: an ingress, or the edge in front of a module's process. Per-client rate
    /// limits then count the client, not the proxy.
    #[arg(long, env = "BULKHEAD_TRUSTED_PROXIES", global = true, value_delimiter = ',', value_parser = parse_proxy)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Where the modules this process does not host are served, and how to reach them.
    #[command(flatten)]
    pub remote: RemoteArgs,

    /// How events travel between modules: Kafka when set, else the publishers' outboxes on
    /// PostgreSQL.
    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[cfg(feature = "users")]
    #[command(flatten)]
    pub users: users::UsersArgs,

    #[cfg(feature = "inventory")]
    #[command(flatten)]
    pub inventory: inventory::InventoryArgs,

    #[cfg(feature = "orders")]
    #[command(flatten)]
    pub orders: orders::OrdersArgs,

    #[cfg(feature = "payments")]
    #[command(flatten)]
    pub payments: payments::PaymentsArgs,

    #[cfg(feature = "notifications")]
    #[command(flatten)]
    pub notifications: notifications::NotificationsArgs,
}

/// The split topology: the URL of each module's process, for the modules this process does
/// not host (their ports are called there and their public routes proxied there), the service
/// keys that authenticate those calls, and how the calls behave.
#[derive(Debug, Clone, Args)]
pub struct RemoteArgs {
    /// Base URL of the process hosting the users module, e.g. `http://10.0.0.5:8080`.
    #[arg(long, env = "BULKHEAD_USERS_URL", global = true, value_parser = |v: &str| http_url(v, "BULKHEAD_USERS_URL"))]
    pub users_url: Option<url::Url>,

    /// Base URL of the process hosting the inventory module.
    #[arg(long, env = "BULKHEAD_INVENTORY_URL", global = true, value_parser = |v: &str| http_url(v, "BULKHEAD_INVENTORY_URL"))]
    pub inventory_url: Option<url::Url>,

    /// Base URL of the process hosting the orders module.
    #[arg(long, env = "BULKHEAD_ORDERS_URL", global = true, value_parser = |v: &str| http_url(v, "BULKHEAD_ORDERS_URL"))]
    pub orders_url: Option<url::Url>,

    /// Base URL of the process hosting the payments module.
    #[arg(long, env = "BULKHEAD_PAYMENTS_URL", global = true, value_parser = |v: &str| http_url(v, "BULKHEAD_PAYMENTS_URL"))]
    pub payments_url: Option<url::Url>,

    /// Base URL of the process hosting the notifications module.
    #[arg(long, env = "BULKHEAD_NOTIFICATIONS_URL", global = true, value_parser = |v: &str| http_url(v, "BULKHEAD_NOTIFICATIONS_URL"))]
    pub notifications_url: Option<url::Url>,

    /// Directory of the service keys (`<module>.key.pem`, `<module>.pub.pem`) that
    /// authenticate calls between modules' processes (default: `<data dir>/service-keys`).
    #[arg(long, env = "BULKHEAD_SERVICE_KEYS_DIR", global = true)]
    pub service_keys_dir: Option<PathBuf>,

    /// How long a port call to another process may take when its caller sets no deadline.
    #[arg(long, env = "BULKHEAD_PORT_TIMEOUT", default_value = "10s", global = true, value_parser = |v: &str| duration_in(v, "BULKHEAD_PORT_TIMEOUT", Some(Duration::from_millis(10)), Some(Duration::from_secs(60))))]
    pub port_timeout: Duration,

    /// Consecutive failed calls to a module's process that open its circuit breaker.
    #[arg(long, env = "BULKHEAD_PORT_BREAKER_FAILURES", default_value = "5", global = true, value_parser = |v: &str| count(v, "BULKHEAD_PORT_BREAKER_FAILURES", 1..=1000))]
    pub port_breaker_failures: u32,

    /// How long an open breaker refuses calls before it lets one probe through (doubling,
    /// with jitter, up to a minute while probes fail).
    #[arg(long, env = "BULKHEAD_PORT_BREAKER_OPEN_FOR", default_value = "5s", global = true, value_parser = |v: &str| duration_in(v, "BULKHEAD_PORT_BREAKER_OPEN_FOR", Some(Duration::from_millis(100)), Some(Duration::from_secs(600))))]
    pub port_breaker_open_for: Duration,
}

impl RemoteArgs {
    /// The URL configured for `module`'s process, with the variable that sets it.
    pub fn url(&self, module: &str) -> (Option<&url::Url>, String) {
        let url = match module {
            "users" => self.users_url.as_ref(),
            "inventory" => self.inventory_url.as_ref(),
            "orders" => self.orders_url.as_ref(),
            "payments" => self.payments_url.as_ref(),
            "notifications" => self.notifications_url.as_ref(),
            _ => None,
        };
        (url, format!("BULKHEAD_{}_URL", module.to_uppercase()))
    }

    /// How port calls to other processes behave.
    pub fn transport(&self) -> platform::remote::TransportSettings {
        let mut settings =
            platform::remote::TransportSettings { default_timeout: self.port_timeout, ..Default::default() };
        settings.breaker.failures = self.port_breaker_failures;
        settings.breaker.open_for = self.port_breaker_open_for;
        settings.breaker.max_open = settings.breaker.max_open.max(self.port_breaker_open_for);
        settings
    }
}

impl Config {
    /// The configuration a user gets with no flags, plus whatever the environment sets.
    ///
    /// # Errors
    /// An environment variable with an invalid value.
    pub fn from_env() -> Result<Self, clap::Error> {
        Cli::try_parse_from(["bulkhead"]).map(|cli| cli.config)
    }

    /// Where the service keys live.
    pub fn service_keys_dir(&self) -> PathBuf {
        self.remote.service_keys_dir.clone().unwrap_or_else(|| self.data_dir.join("service-keys"))
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

    /// The Kafka transport's settings, when `BULKHEAD_KAFKA_BROKERS` chooses it, with the
    /// `BULKHEAD_KAFKA_CLIENT_*` pass-through properties.
    ///
    /// # Errors
    /// Kafka asked of a binary built without the `kafka` feature.
    #[cfg(feature = "kafka")]
    pub fn kafka(&self) -> anyhow::Result<Option<platform::bus::kafka::KafkaConfig>> {
        use platform::bus::kafka::KafkaConfig;
        Ok(self.kafka.brokers.as_ref().map(|brokers| KafkaConfig {
            topic_prefix: self.kafka.topic_prefix.clone(),
            partitions: self.kafka.partitions,
            replication: self.kafka.replication,
            client: KafkaConfig::client_properties(std::env::vars()),
            ..KafkaConfig::new(brokers.clone())
        }))
    }

    /// Without the `kafka` feature, asking for Kafka is a start-up error, not a silent fallback.
    ///
    /// # Errors
    /// `BULKHEAD_KAFKA_BROKERS` is set.
    #[cfg(not(feature = "kafka"))]
    pub fn kafka(&self) -> anyhow::Result<Option<std::convert::Infallible>> {
        anyhow::ensure!(
            self.kafka.brokers.is_none(),
            "BULKHEAD_KAFKA_BROKERS is set, but this binary was built without the `kafka` feature"
        );
        Ok(None)
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
    settings::postgres_url(value, variable)
}

fn parse_pool_size(value: &str) -> Result<u32, String> {
    count(value, "BULKHEAD_DB_POOL_SIZE", 1..=500)
}

fn parse_rate(value: &str) -> Result<u32, String> {
    count(value, "BULKHEAD_RATE_LIMIT_PER_SECOND", 0..=1_000_000)
}

fn parse_burst(value: &str) -> Result<u32, String> {
    count(value, "BULKHEAD_RATE_LIMIT_BURST", 1..=1_000_000)
}

fn parse_size(value: &str) -> Result<usize, String> {
    settings::size(value, "BULKHEAD_BODY_LIMIT")
}

fn parse_request_timeout(value: &str) -> Result<Duration, String> {
    duration_in(value, "BULKHEAD_REQUEST_TIMEOUT", None, None)
}

fn parse_shutdown_timeout(value: &str) -> Result<Duration, String> {
    duration_in(value, "BULKHEAD_SHUTDOWN_TIMEOUT", None, None)
}

fn parse_bus_retention(value: &str) -> Result<Duration, String> {
    duration_in(value, "BULKHEAD_BUS_RETENTION", None, None)
}

fn parse_bus_retention_interval(value: &str) -> Result<Duration, String> {
    duration_in(value, "BULKHEAD_BUS_RETENTION_INTERVAL", None, None)
}

fn parse_bus_poll_interval(value: &str) -> Result<Duration, String> {
    duration_in(value, "BULKHEAD_BUS_POLL_INTERVAL", None, None)
}

fn parse_origin(value: &str) -> Result<HeaderValue, String> {
    let url = url::Url::parse(value.trim())
        .map_err(|_| format!("BULKHEAD_CORS_ORIGINS: `{value}` is not an origin such as https://shop.example"))?;
    HeaderValue::from_str(url.origin().ascii_serialization().as_str())
        .map_err(|_| format!("BULKHEAD_CORS_ORIGINS: `{value}` is not a valid origin"))
}

/// An IP address (a single host) or a CIDR block.
fn parse_proxy(value: &str) -> Result<ipnet::IpNet, String> {
    let value = value.trim();
    value.parse::<ipnet::IpNet>().or_else(|_| value.parse::<std::net::IpAddr>().map(ipnet::IpNet::from)).map_err(|_| {
        format!("BULKHEAD_TRUSTED_PROXIES: `{value}` is not an IP address or a CIDR block such as 10.0.0.0/8")
    })
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
    fn module_urls_and_trusted_proxies_parse() {
        let cli =
            parse(&["--payments-url", "http://10.0.0.7:8081/", "--trusted-proxies", "127.0.0.1,10.0.0.0/8"]).unwrap();
        assert_eq!(cli.config.remote.url("payments").0.map(url::Url::as_str), Some("http://10.0.0.7:8081/"));
        assert_eq!(cli.config.remote.url("users"), (None, "BULKHEAD_USERS_URL".to_owned()));
        assert_eq!(cli.config.trusted_proxies.len(), 2);
        for (args, variable) in [
            (&["--users-url", "users:8080"][..], "BULKHEAD_USERS_URL"),
            (&["--trusted-proxies", "the ingress"][..], "BULKHEAD_TRUSTED_PROXIES"),
            (&["--port-timeout", "2h"][..], "BULKHEAD_PORT_TIMEOUT"),
        ] {
            let message = parse(args).unwrap_err().to_string();
            assert!(message.contains(variable), "{args:?}: {message}");
        }
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
}
