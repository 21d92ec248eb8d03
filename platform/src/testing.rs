//! Test support (feature `testing`): every test gets a fresh database cloned from a migrated
//! template, on one embedded cluster shared by all test processes (or on the server of
//! `TEST_DATABASE_URL`).
//!
//! The shared cluster lives in `$BULKHEAD_TEST_PG_DIR` (default: a per-user directory in the
//! system temp dir), is started by whichever test process needs it first (under a file lock),
//! and keeps running between runs so later runs start in milliseconds. Templates are keyed by
//! a digest of every migration (the jobs schema's included), so a changed migration builds a
//! new template.

mod harness;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod otlp;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::sync::OnceCell;

use crate::db::{
    AdminAccess, DatabaseSetup, Databases, EmbeddedOptions, EmbeddedPostgres, JobsDatabase, ModuleSchema, migrate,
};
use crate::jobs::{JobsConfig, JobsRuntime};
use crate::metrics::Metrics;

pub use harness::{ModuleHarness, error_code, read, read_or_fail, send};

/// Test databases are dropped by a later process once they are this old.
const TEST_DATABASE_MAX_AGE: Duration = Duration::from_secs(3600);
const TEST_DATABASE_PREFIX: &str = "bulkhead_test_";
/// Part of every template's digest: changed whenever what a template holds besides the
/// migrations changes (3: the jobs schema, its role, its grants and its row-level security).
const TEMPLATE_LAYOUT: &[u8] = b"bulkhead-template-3";

/// The server tests run against: admin options on its `postgres` database.
#[derive(Debug, Clone)]
struct TestServer {
    admin: PgConnectOptions,
    role_secret: SecretString,
}

// Plain data only (no pools): each test has its own runtime, and pools must not outlive it.
static SERVER: OnceCell<TestServer> = OnceCell::const_new();

/// Where the shared test cluster lives.
pub fn shared_cluster_dir() -> PathBuf {
    std::env::var_os("BULKHEAD_TEST_PG_DIR").map_or_else(
        || std::env::temp_dir().join(format!("bulkhead-test-cluster-{}", nix::unistd::Uid::effective())),
        PathBuf::from,
    )
}

async fn server() -> anyhow::Result<&'static TestServer> {
    SERVER
        .get_or_try_init(|| async {
            let server = match std::env::var("TEST_DATABASE_URL") {
                Ok(url) => {
                    let access = AdminAccess::from_url(&SecretString::from(url))?;
                    TestServer { admin: access.options.database("postgres"), role_secret: access.role_secret }
                }
                Err(_) => {
                    let options = EmbeddedOptions::new(shared_cluster_dir()).with_test_settings();
                    let address = EmbeddedPostgres::ensure_running_detached(&options)
                        .await
                        .context("starting the shared embedded test cluster")?;
                    TestServer { admin: address.connect_options("postgres"), role_secret: address.password.clone() }
                }
            };
            drop_stale_test_databases(&server.admin).await.ok();
            Ok(server)
        })
        .await
}

/// A fresh database of its own for one test, with every module schema and the jobs schema
/// provisioned and migrated. Dropped by a later test process after a few hours, so a failed test's data can
/// still be inspected.
#[derive(Debug, Clone)]
pub struct TestDatabase {
    pub name: String,
    /// Admin (superuser) access to this database: what `DATABASE_URL` would give the app.
    pub admin: AdminAccess,
}

impl TestDatabase {
    /// Clones the template for `schemas` (building it first if no process has yet).
    ///
    /// # Errors
    /// When the server cannot be reached or the template cannot be built.
    pub async fn create(schemas: &[ModuleSchema]) -> anyhow::Result<Self> {
        let server = server().await?;
        let template = ensure_template(server, schemas).await?;
        let stamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let name = format!("{TEST_DATABASE_PREFIX}{stamp}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let mut connection = PgConnection::connect_with(&server.admin).await?;
        let sql = format!("CREATE DATABASE {name} TEMPLATE {template}");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut connection)
            .await
            .with_context(|| format!("cloning {template}"))?;
        connection.close().await.ok();
        Ok(Self {
            admin: AdminAccess {
                options: server.admin.clone().database(&name),
                role_secret: server.role_secret.clone(),
            },
            name,
        })
    }

    /// The setup the app would get from `DATABASE_URL` pointing at this database.
    pub fn setup(&self) -> DatabaseSetup {
        DatabaseSetup {
            admin: Some(self.admin.clone()),
            module_urls: Default::default(),
            pool_size: 5,
            jobs: JobsDatabase::Provisioned,
            peers: Vec::new(),
        }
    }

    /// A `postgres://` URL for this database with admin rights, for the app's `DATABASE_URL`.
    pub fn url(&self) -> SecretString {
        SecretString::from(self.admin.options.to_url_lossy().to_string())
    }

    /// Pools for the modules, connected as their own roles.
    ///
    /// # Errors
    /// When connecting fails.
    pub async fn connect(&self, schemas: &[ModuleSchema]) -> anyhow::Result<Databases> {
        Databases::connect(&self.setup(), schemas).await
    }

    /// Admin connection to this database.
    ///
    /// # Errors
    /// When connecting fails.
    pub async fn admin_connection(&self) -> anyhow::Result<PgConnection> {
        Ok(PgConnection::connect_with(&self.admin.options).await?)
    }
}

/// Name of the template for `schemas`; builds it under a cluster-wide advisory lock when
/// missing. Built under a temporary name and renamed, so a crash mid-build leaves no
/// half-made template behind.
async fn ensure_template(server: &TestServer, schemas: &[ModuleSchema]) -> anyhow::Result<String> {
    let mut digest = Sha256::new();
    digest.update(TEMPLATE_LAYOUT);
    for schema in schemas {
        schema.fingerprint(&mut digest);
    }
    migrate::jobs_fingerprint(&mut digest);
    let hash = hex::encode(digest.finalize());
    let template = format!("bulkhead_template_{}", &hash[..16]);
    let lock_key = i64::from_be_bytes(hex::decode(&hash[..16])?.try_into().unwrap_or_default());

    let mut connection = PgConnection::connect_with(&server.admin).await?;
    if template_ready(&mut connection, &template).await? {
        return Ok(template);
    }
    sqlx::query("SELECT pg_advisory_lock($1)").bind(lock_key).execute(&mut connection).await?;
    let outcome = async {
        if template_ready(&mut connection, &template).await? {
            return Ok(());
        }
        let building = format!("{template}_building");
        for sql in [format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"), format!("CREATE DATABASE {building}")] {
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut connection).await?;
        }
        let setup = DatabaseSetup {
            admin: Some(AdminAccess {
                options: server.admin.clone().database(&building),
                role_secret: server.role_secret.clone(),
            }),
            module_urls: Default::default(),
            pool_size: 2,
            jobs: JobsDatabase::Provisioned,
            peers: Vec::new(),
        };
        let databases = Databases::connect(&setup, schemas).await?;
        let migrated = databases.migrate(schemas).await;
        databases.close().await;
        migrated.context("migrating the test template")?;
        for sql in [
            format!("ALTER DATABASE {building} RENAME TO {template}"),
            format!("ALTER DATABASE {template} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut connection).await?;
        }
        drop_old_templates(&mut connection).await;
        anyhow::Ok(())
    }
    .await;
    sqlx::query("SELECT pg_advisory_unlock($1)").bind(lock_key).execute(&mut connection).await.ok();
    connection.close().await.ok();
    outcome.map(|()| template)
}

/// Templates of earlier migration sets pile up as migrations change; keep the newest few
/// (other checkouts or branches may still use them).
async fn drop_old_templates(connection: &mut PgConnection) {
    let old: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database WHERE datistemplate AND datname LIKE 'bulkhead\\_template\\_%'
          ORDER BY oid DESC OFFSET 4",
    )
    .fetch_all(&mut *connection)
    .await
    .unwrap_or_default();
    for name in old {
        for sql in [format!("ALTER DATABASE {name} WITH IS_TEMPLATE false"), format!("DROP DATABASE IF EXISTS {name}")]
        {
            if sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *connection).await.is_err() {
                break;
            }
        }
    }
}

async fn template_ready(connection: &mut PgConnection, template: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)")
        .bind(template)
        .fetch_one(connection)
        .await
}

async fn drop_stale_test_databases(admin: &PgConnectOptions) -> anyhow::Result<()> {
    let mut connection = PgConnection::connect_with(admin).await?;
    let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
        .bind(format!("{TEST_DATABASE_PREFIX}%"))
        .fetch_all(&mut connection)
        .await?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    for name in names {
        let created = name
            .strip_prefix(TEST_DATABASE_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|stamp| stamp.parse::<u64>().ok());
        if created.is_some_and(|created| now.saturating_sub(created) > TEST_DATABASE_MAX_AGE.as_secs()) {
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut connection).await.ok();
        }
    }
    connection.close().await.ok();
    Ok(())
}

/// Polls `check` until it returns `Some`, or fails after `timeout`. Use it instead of sleeps
/// wherever a test waits for something asynchronous.
///
/// # Errors
/// When the deadline passes, with the last state described by `check`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        if tokio::time::Instant::now() >= deadline {
            let detail = last_error.map_or_else(|| "the condition never held".to_owned(), |e| format!("{e:#}"));
            anyhow::bail!("not true within {timeout:?}: {detail}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A jobs runtime on the jobs pool of `databases` (a [`TestDatabase`]'s), tuned for tests:
/// it polls every 100 ms, so jobs scheduled for later start promptly, and stops within 5 s.
/// Add the queues under test and start it:
///
/// ```ignore
/// let handle = testing::jobs_runtime(&databases, &Metrics::new())?.queues(module.jobs()).start(stop.clone()).await?;
/// ```
///
/// # Errors
/// When `databases` has no jobs pool.
pub fn jobs_runtime(databases: &Databases, metrics: &Metrics) -> anyhow::Result<JobsRuntime> {
    let config = JobsConfig {
        poll_interval: Duration::from_millis(100),
        shutdown_timeout: Duration::from_secs(5),
        ..JobsConfig::default()
    };
    Ok(JobsRuntime::new(databases.jobs_pool()?.clone(), metrics).instance("test").config(config))
}

/// The superuser password of the shared test cluster, for tests that connect by hand.
pub async fn server_admin() -> anyhow::Result<(PgConnectOptions, String)> {
    let server = server().await?;
    Ok((server.admin.clone(), server.role_secret.expose_secret().to_owned()))
}

/// The pid recorded in `<data_dir>/postgres/postmaster.pid`: the embedded server that runs, or
/// ran until a crash, on that data dir.
pub fn embedded_server_pid(data_dir: &Path) -> Option<nix::unistd::Pid> {
    let contents = std::fs::read_to_string(data_dir.join("postgres/postmaster.pid")).ok()?;
    contents.lines().next()?.trim().parse().ok().map(nix::unistd::Pid::from_raw)
}

/// Whether `pid` is a live process (exited and zombie processes are not).
pub fn process_running(pid: nix::unistd::Pid) -> bool {
    nix::sys::signal::kill(pid, None).is_ok() && !crate::db::embedded::is_zombie(pid)
}

/// A router served on a loopback port (with connect info, as the app serves), stopped when
/// dropped. Module tests mount their module's routes with the shared middleware and drive
/// them over real HTTP.
#[derive(Debug)]
pub struct Served {
    pub address: std::net::SocketAddr,
    stop: tokio_util::sync::CancellationToken,
}

impl Served {
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start(router: axum::Router) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let stop = tokio_util::sync::CancellationToken::new();
        let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let stopped = stop.clone().cancelled_owned();
        tokio::spawn(async move { axum::serve(listener, service).with_graceful_shutdown(stopped).await });
        Ok(Self { address, stop })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }
}

/// The transport `caller`'s process would call `callee`'s ports through, at `served`: what a
/// contract test runs a port's cases against over HTTP.
///
/// # Errors
/// The caller's key cannot be made.
pub fn port_transport(
    served: &Served,
    keys: &crate::remote::ServiceKeys,
    caller: &'static str,
    callee: &'static str,
    settings: crate::remote::TransportSettings,
) -> anyhow::Result<std::sync::Arc<dyn shared_kernel::port::remote::Transport>> {
    keys.sign_for(caller)?;
    let url: url::Url = served.url("").parse()?;
    let metrics = crate::remote::PortMetrics::register(&Metrics::new());
    Ok(std::sync::Arc::new(crate::remote::HttpTransport::new(
        reqwest::Client::new(),
        &url,
        caller,
        callee,
        keys.clone(),
        settings,
        metrics,
    )))
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Signs access tokens with a throwaway Ed25519 key, for tests that need a caller the app
/// trusts without signing in (add its key to the verifier with [`TestSigner::trust`]).
pub struct TestSigner {
    kid: String,
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for TestSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestSigner").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl TestSigner {
    /// A fresh key with a random key id.
    pub fn new() -> Self {
        Self::generate(&format!("test-{}", uuid::Uuid::new_v4().simple()))
    }

    /// A fresh key named `kid`.
    pub fn generate(kid: &str) -> Self {
        Self { kid: kid.to_owned(), key: ed25519_dalek::SigningKey::from_bytes(&rand::random()) }
    }

    /// A fresh key named by its RFC 7638 thumbprint, as the users module names the keys in
    /// its key directory: written there ([`TestSigner::pkcs8_pem`]), it signs tokens every
    /// process trusts through users' JWKS.
    pub fn named_by_thumbprint() -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(&rand::random());
        let kid = crate::key_files::ed25519_thumbprint(&key.verifying_key().to_bytes());
        Self { kid, key }
    }

    /// The private key as PKCS#8 PEM, the form of the users module's key files.
    ///
    /// # Panics
    /// Never for an Ed25519 key.
    pub fn pkcs8_pem(&self) -> String {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        #[expect(clippy::expect_used, reason = "test support; an Ed25519 key always encodes")]
        let pem = self.key.to_pkcs8_pem(Default::default()).expect("an Ed25519 key encodes");
        pem.to_string()
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn public_bytes(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> serde_json::Value {
        use base64::Engine;
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.public_bytes());
        serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": self.kid, "x": x })
    }

    /// Makes `verifier` (and its clones) accept tokens of this key.
    pub fn trust(&self, verifier: &crate::auth::JwtVerifier) {
        verifier.add_ed25519_key(&self.kid, &self.public_bytes());
    }

    /// Signs `claims` as they are.
    ///
    /// # Panics
    /// Never with a generated key.
    #[expect(clippy::expect_used, reason = "test support fails loudly")]
    pub fn sign(&self, claims: &crate::auth::Claims) -> String {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let der = self.key.to_pkcs8_der().expect("an Ed25519 key encodes");
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()))
            .expect("claims encode")
    }

    /// A 15-minute token for `subject` with `roles`, for `verifier`'s issuer and audience.
    pub fn token(&self, verifier: &crate::auth::JwtVerifier, subject: &str, roles: &[crate::auth::Role]) -> String {
        let now = chrono::Utc::now().timestamp();
        self.sign(&crate::auth::Claims {
            sub: subject.to_owned(),
            roles: roles.to_vec(),
            iss: verifier.issuer().to_owned(),
            aud: verifier.audience().to_owned(),
            exp: now + 900,
            iat: now,
            nbf: Some(now),
            jti: Some(uuid::Uuid::now_v7().to_string()),
            sid: None,
        })
    }
}

impl Default for TestSigner {
    fn default() -> Self {
        Self::new()
    }
}

/// Makes a module test's `Harness` (a struct holding a [`ModuleHarness`] in its `base` field,
/// beside the fakes and tokens of that module) read as the `ModuleHarness` itself:
/// `platform::harness_deref!(Harness);` instead of the same `Deref` impl in every module.
#[macro_export]
macro_rules! harness_deref {
    ($harness:ty) => {
        impl ::std::ops::Deref for $harness {
            type Target = $crate::testing::ModuleHarness;

            fn deref(&self) -> &Self::Target {
                &self.base
            }
        }
    };
}
