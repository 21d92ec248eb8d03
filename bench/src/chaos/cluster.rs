//! What the chaos harness runs and breaks: an embedded PostgreSQL on a fixed loopback port
//! (so it can be restarted under the app), two replicas of the real `bulkhead` binary on one
//! database, and the switch that takes the sandbox gateway down for every replica.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use platform::db::{EmbeddedOptions, EmbeddedPostgres};
use secrecy::ExposeSecret;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::process::{Child, Command};

use crate::app::{ADMIN_EMAIL, ADMIN_PASSWORD};

/// The database the replicas share.
const DATABASE: &str = "bulkhead";
/// The replicas' shared secret for the sandbox's webhooks.
const WEBHOOK_SECRET: &str = "whsec_chaos_0123456789abcdef";

/// The embedded PostgreSQL, restartable on its port.
pub(crate) struct Database {
    options: EmbeddedOptions,
    server: Option<EmbeddedPostgres>,
    pub(crate) url: String,
    /// A superuser pool on the app's database, for the harness's own reads and the switch.
    pub(crate) admin: PgPool,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").field("port", &self.options.port).finish_non_exhaustive()
    }
}

impl Database {
    /// Starts a fresh cluster under `dir` on a free port it keeps, and creates the database.
    pub(crate) async fn start(dir: &Path) -> anyhow::Result<Self> {
        let mut options = EmbeddedOptions::new(dir).with_test_settings();
        options.port = Some(free_port()?);
        let server = EmbeddedPostgres::start(&options).await.context("starting PostgreSQL")?;
        let mut connection = PgConnection::connect_with(&server.connect_options("postgres")).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {DATABASE}"))).execute(&mut connection).await?;
        connection.close().await.ok();
        let address = server.address();
        let url = format!(
            "postgres://{}:{}@127.0.0.1:{}/{DATABASE}",
            platform::db::embedded::SUPERUSER,
            address.password.expose_secret(),
            address.port
        );
        let admin = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_lazy_with(server.connect_options(DATABASE));
        Ok(Self { options, server: Some(server), url, admin })
    }

    /// Fast shutdown (every client disconnected), then a start on the same port. Returns how
    /// long the server was away.
    pub(crate) async fn restart(&mut self) -> anyhow::Result<Duration> {
        let stopped_at = Instant::now();
        if let Some(server) = self.server.take() {
            server.stop().await.context("stopping PostgreSQL")?;
        }
        self.server = Some(EmbeddedPostgres::start(&self.options).await.context("restarting PostgreSQL")?);
        Ok(stopped_at.elapsed())
    }

    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        self.admin.close().await;
        if let Some(server) = self.server.take() {
            server.stop().await?;
        }
        Ok(())
    }
}

/// A loopback port free right now.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// How the replicas are configured beyond the defaults.
#[derive(Debug, Clone)]
pub(crate) struct ReplicaSettings {
    pub(crate) bin: PathBuf,
    pub(crate) database_url: String,
    pub(crate) smtp_port: u16,
    /// Shared by every replica: one signing key, so tokens verify everywhere.
    pub(crate) keys_dir: PathBuf,
    pub(crate) work_dir: PathBuf,
}

/// One replica of the app: a child process on a port of its own.
#[derive(Debug)]
pub(crate) struct Replica {
    pub(crate) name: String,
    pub(crate) port: u16,
    settings: ReplicaSettings,
    child: Option<Child>,
}

impl Replica {
    pub(crate) fn new(name: &str, settings: ReplicaSettings) -> anyhow::Result<Self> {
        Ok(Self { name: name.to_owned(), port: free_port()?, settings, child: None })
    }

    pub(crate) fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the process and waits (up to `patience`) until it serves; a start that fails
    /// (the database restarting, the port not yet free) is tried again.
    pub(crate) async fn start(&mut self, client: &reqwest::Client, patience: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + patience;
        loop {
            self.spawn()?;
            if self.wait_serving(client, deadline).await? {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "replica {} did not start within {patience:?}", self.name);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let s = &self.settings;
        let data_dir = s.work_dir.join(&self.name);
        std::fs::create_dir_all(&data_dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(s.work_dir.join(format!("{}.log", self.name)))?;
        let child = Command::new(&s.bin)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOSTNAME", &self.name)
            .env("BULKHEAD_ADDR", format!("127.0.0.1:{}", self.port))
            .env("BULKHEAD_DATA_DIR", &data_dir)
            .env("DATABASE_URL", &s.database_url)
            .env("BULKHEAD_JWT_KEYS_DIR", &s.keys_dir)
            .env("BULKHEAD_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("BULKHEAD_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("BULKHEAD_DEMO_DATA", "false")
            .env("BULKHEAD_RATE_LIMIT_PER_SECOND", "0")
            .env("BULKHEAD_DB_POOL_SIZE", "8")
            .env("BULKHEAD_SHUTDOWN_TIMEOUT", "5s")
            .env("BULKHEAD_ORDERS_PAYMENT_TIMEOUT", "5m")
            .env("BULKHEAD_INVENTORY_RESERVATION_TTL", "10m")
            .env("BULKHEAD_PAYMENTS_SANDBOX_LATENCY", "20ms")
            .env("BULKHEAD_PAYMENTS_GATEWAY_TIMEOUT", "5s")
            .env("BULKHEAD_PAYMENTS_RECONCILE_AFTER", "15s")
            .env("BULKHEAD_PAYMENTS_WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("BULKHEAD_MAIL_TRANSPORT", "smtp")
            .env("BULKHEAD_SMTP_HOST", "127.0.0.1")
            .env("BULKHEAD_SMTP_PORT", s.smtp_port.to_string())
            .env("BULKHEAD_SMTP_TLS", "none")
            .env("BULKHEAD_SMTP_TIMEOUT", "5s")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", s.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Whether the process serves before `deadline`; false when it exited first.
    async fn wait_serving(&mut self, client: &reqwest::Client, deadline: Instant) -> anyhow::Result<bool> {
        let health = format!("{}/health", self.base_url());
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && child.try_wait()?.is_some()
            {
                self.child = None;
                return Ok(false);
            }
            if client.get(&health).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(false)
    }

    pub(crate) fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// SIGKILL: no drain, no clean-up, as when a machine dies.
    pub(crate) async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.start_kill().ok();
            child.wait().await.context("reaping a killed replica")?;
        }
        Ok(())
    }

    /// SIGTERM and wait: the graceful stop at the end of the run.
    pub(crate) async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM).ok();
            }
            if tokio::time::timeout(Duration::from_secs(20), child.wait()).await.is_err() {
                child.start_kill().ok();
                child.wait().await?;
            }
        }
        Ok(())
    }
}

/// The replicas, shared between the load (which picks a live one) and the chaos (which kills
/// and restarts them).
#[derive(Debug, Clone)]
pub(crate) struct Fleet {
    pub(crate) replicas: Arc<Vec<tokio::sync::Mutex<Replica>>>,
    /// Base URLs of the replicas believed up, for clients to spread over.
    up: Arc<Mutex<Vec<String>>>,
    all: Arc<Vec<String>>,
}

impl Fleet {
    pub(crate) fn new(replicas: Vec<Replica>) -> Self {
        let all: Vec<String> = replicas.iter().map(Replica::base_url).collect();
        Self {
            up: Arc::new(Mutex::new(all.clone())),
            all: Arc::new(all),
            replicas: Arc::new(replicas.into_iter().map(tokio::sync::Mutex::new).collect()),
        }
    }

    /// A replica to send a request to: one believed up, picked at random (every one when
    /// none is: the client's retry finds the first to come back).
    pub(crate) fn pick(&self) -> String {
        let up = self.up.lock().unwrap_or_else(PoisonError::into_inner);
        let candidates = if up.is_empty() { self.all.as_slice() } else { up.as_slice() };
        candidates[rand::random_range(0..candidates.len())].clone()
    }

    pub(crate) fn mark(&self, url: &str, is_up: bool) {
        let mut up = self.up.lock().unwrap_or_else(PoisonError::into_inner);
        up.retain(|u| u != url);
        if is_up {
            up.push(url.to_owned());
        }
    }

    pub(crate) fn up_count(&self) -> usize {
        self.up.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// Takes the sandbox gateway down (every call answers 503, for every replica) until `until`,
/// or brings it back (`None`).
pub(crate) async fn gateway_outage(admin: &PgPool, until: Option<chrono::DateTime<chrono::Utc>>) -> anyhow::Result<()> {
    payments::set_sandbox_outage_until(admin.clone(), until).await
}
