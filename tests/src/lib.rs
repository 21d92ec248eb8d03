//! Test support for cross-module scenarios: the real application on a database of its own,
//! driven over HTTP like a client, in either topology.
//!
//! - [`Topology::Monolith`]: every module in this test process, on port 0.
//! - [`Topology::Split`]: every module in its own OS process, started from the built binary,
//!   each with its own database role; the orders process is the edge the test talks to.
//! - [`Topology::SplitOverKafka`]: the split, each process with a database of its own, and
//!   events between them through the test Kafka broker.
//!
//! A scenario is written once against [`TestApp`] and run on all three (`on_every_topology!`
//! in the scenario crate).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test support fails loudly")]

mod split;

use std::net::SocketAddr;
use std::time::Duration;

use bulkhead::{Application, Cli, Config};
use clap::Parser;
use platform::testing::{TestDatabase, TestSigner};
use secrecy::ExposeSecret;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use platform::auth::Role;
pub use platform::testing::eventually;
pub use split::{SplitProcesses, wait_for_health};

/// The first admin every spawned app creates.
pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "operator passphrase 42";

/// Where the modules run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// All modules in one process.
    Monolith,
    /// Each module in its own process, behind an edge.
    Split,
    /// Each module in its own process with its own database, events through Kafka.
    SplitOverKafka,
}

/// The application, running in one of the topologies.
#[derive(Debug)]
pub struct TestApp {
    /// The address clients use: the monolith, or the edge of the split.
    pub address: SocketAddr,
    pub client: reqwest::Client,
    /// The database of the process clients talk to (in [`Topology::SplitOverKafka`], the
    /// edge's; [`TestApp::database_of`] has the others).
    pub database: TestDatabase,
    /// Each other module's own database, in [`Topology::SplitOverKafka`].
    others: Vec<(&'static str, TestDatabase)>,
    pub topology: Topology,
    signing: TestSigner,
    verifier: platform::auth::JwtVerifier,
    running: Running,
    data_dir: tempfile::TempDir,
}

#[derive(Debug)]
enum Running {
    InProcess { shutdown: CancellationToken, server: JoinHandle<anyhow::Result<()>> },
    Processes(SplitProcesses),
}

impl TestApp {
    /// Spawns the monolith with every compiled module, on a fresh database.
    pub async fn spawn() -> Self {
        Self::spawn_on(Topology::Monolith, &[]).await
    }

    /// Spawns the monolith with extra command-line flags (e.g. `["--rate-limit-per-second", "1"]`).
    pub async fn spawn_with(flags: &[&str]) -> Self {
        Self::spawn_on(Topology::Monolith, flags).await
    }

    /// Spawns the app in `topology` with extra flags (given to every process of a split).
    pub async fn spawn_on(topology: Topology, flags: &[&str]) -> Self {
        Self::spawn_with_env(topology, flags, &[]).await
    }

    /// As [`TestApp::spawn_on`], with environment variables for every process of a split
    /// (the monolith runs in this process, whose environment tests leave alone).
    pub async fn spawn_with_env(topology: Topology, flags: &[&str], env: &[(&str, &str)]) -> Self {
        let schemas: Vec<_> = bulkhead::modules::compiled().iter().map(|d| d.schema).collect();
        // Over Kafka each module's process has a database holding its schema only.
        let (database, others) = if topology == Topology::SplitOverKafka {
            let mut own = Vec::new();
            for schema in &schemas {
                own.push((schema.name, TestDatabase::create(std::slice::from_ref(schema)).await.unwrap()));
            }
            let edge = own.iter().position(|(name, _)| *name == split::EDGE).expect("the edge module");
            (own.remove(edge).1, own)
        } else {
            (TestDatabase::create(&schemas).await.unwrap(), Vec::new())
        };
        let data_dir = tempfile::tempdir().unwrap();
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        let (address, signing, verifier, running) = match topology {
            Topology::Monolith => {
                let (address, signing, verifier, shutdown, server) =
                    spawn_in_process(&database, data_dir.path(), flags).await;
                (address, signing, verifier, Running::InProcess { shutdown, server })
            }
            Topology::Split | Topology::SplitOverKafka => {
                // The test's key is one of the users module's own: every process trusts it
                // through users' JWKS, as they trust the tokens users signs.
                let signing = TestSigner::named_by_thumbprint();
                let keys = data_dir.path().join("keys");
                std::fs::create_dir_all(&keys).unwrap();
                std::fs::write(keys.join("1.ed25519.pem"), signing.pkcs8_pem()).unwrap();
                let verifier = platform::auth::JwtVerifier::new("bulkhead", "bulkhead-api");
                let backends = match topology {
                    Topology::SplitOverKafka => {
                        let broker = platform::testing::kafka::shared_broker().await.expect("the test broker starts");
                        let mut databases: Vec<(&str, &TestDatabase)> =
                            others.iter().map(|(name, database)| (*name, database)).collect();
                        databases.push((split::EDGE, &database));
                        split::Backends::OverKafka {
                            databases,
                            brokers: broker.brokers(),
                            prefix: format!("t{}", uuid::Uuid::now_v7().simple()),
                        }
                    }
                    _ => split::Backends::Shared(&database),
                };
                let processes = SplitProcesses::start(&backends, data_dir.path(), flags, env).await;
                (processes.edge(), signing, verifier, Running::Processes(processes))
            }
        };
        let app = Self { address, client, database, others, topology, signing, verifier, running, data_dir };
        // The bus and the jobs runtime start before the server accepts: wait until it does, so
        // a test that then disturbs the database does not disturb the start instead.
        let health = app.url("/health");
        eventually(Duration::from_secs(60), || async {
            Ok(app.client.get(&health).send().await.is_ok().then_some(()))
        })
        .await
        .expect("the app never started serving");
        app
    }

    /// The database holding `module`'s schema.
    pub fn database_of(&self, module: &str) -> &TestDatabase {
        self.others.iter().find(|(name, _)| *name == module).map_or(&self.database, |(_, database)| database)
    }

    /// An access token the app accepts, for `subject` with `roles`, signed by a key the test
    /// added to the app's keys (the users module signs real ones).
    pub fn token(&self, subject: &str, roles: &[Role]) -> String {
        self.signing.token(&self.verifier, subject, roles)
    }

    pub fn admin_token(&self) -> String {
        self.token("test-admin", &[Role::Admin])
    }

    pub fn customer_token(&self) -> String {
        self.token("test-customer", &[Role::Customer])
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// `POST` of a JSON body, with a bearer token when given.
    pub async fn post(&self, path: &str, token: Option<&str>, body: &serde_json::Value) -> reqwest::Response {
        let mut request = self.client.post(self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    /// `GET` with a bearer token.
    pub async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        self.client.get(self.url(path)).bearer_auth(token).send().await.unwrap()
    }

    /// Signs in through the users module; returns the access token.
    pub async fn sign_in(&self, email: &str, password: &str) -> String {
        let body = serde_json::json!({ "email": email, "password": password });
        let response = self.post("/api/v1/auth/login", None, &body).await;
        assert_eq!(response.status(), reqwest::StatusCode::OK, "signing in as {email}");
        let body: serde_json::Value = response.json().await.unwrap();
        body["data"]["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// The file mailbox the app writes its email to (one `.eml` per message).
    pub fn mailbox_dir(&self) -> std::path::PathBuf {
        self.data_dir.path().join("mailbox")
    }

    /// The processes of a split topology (`None` for the monolith), to stop, kill or
    /// restart one of them.
    pub fn processes(&mut self) -> Option<&mut SplitProcesses> {
        match &mut self.running {
            Running::Processes(processes) => Some(processes),
            Running::InProcess { .. } => None,
        }
    }

    /// The address of the process hosting `module` in a split (`None` for the monolith).
    pub fn process_address(&self, module: &str) -> Option<SocketAddr> {
        match &self.running {
            Running::Processes(processes) => Some(processes.address_of(module)),
            Running::InProcess { .. } => None,
        }
    }

    /// Graceful shutdown, as on SIGTERM: every process must drain and exit cleanly.
    pub async fn stop(self) -> anyhow::Result<()> {
        match self.running {
            Running::InProcess { shutdown, server } => {
                shutdown.cancel();
                server.await?
            }
            Running::Processes(processes) => processes.stop().await,
        }
    }
}

/// The monolith in this test process.
async fn spawn_in_process(
    database: &TestDatabase,
    data_dir: &std::path::Path,
    flags: &[&str],
) -> (SocketAddr, TestSigner, platform::auth::JwtVerifier, CancellationToken, JoinHandle<anyhow::Result<()>>) {
    let url = database.url();
    let data_dir_arg = data_dir.display().to_string();
    let mut args = vec![
        "bulkhead",
        "--addr",
        "127.0.0.1:0",
        "--database-url",
        url.expose_secret(),
        "--data-dir",
        &data_dir_arg,
        "--db-pool-size",
        "5",
        "--admin-email",
        ADMIN_EMAIL,
        "--admin-password",
        ADMIN_PASSWORD,
    ];
    args.extend_from_slice(flags);
    let config: Config = Cli::try_parse_from(args).unwrap().config;
    let application = Application::build(config).await.unwrap();
    let signing = TestSigner::new();
    let verifier = application.jwt_verifier();
    signing.trust(&verifier);
    let address = application.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(application.run_until_stopped(shutdown.clone()));
    (address, signing, verifier, shutdown, server)
}
