//! Test support for cross-module scenarios: the real application spawned in process on port
//! 0 against a database of its own, driven over HTTP like a client.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test support fails loudly")]

use std::net::SocketAddr;
use std::time::Duration;

use bulkhead::{Application, Cli, Config};
use clap::Parser;
use platform::testing::{TestDatabase, TestSigner};
use secrecy::ExposeSecret;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use platform::auth::Role;

/// The first admin every spawned app creates.
pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "operator passphrase 42";
pub use platform::testing::eventually;

/// The application running in this process.
#[derive(Debug)]
pub struct TestApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub database: TestDatabase,
    signing: TestSigner,
    verifier: platform::auth::JwtVerifier,
    shutdown: CancellationToken,
    server: JoinHandle<anyhow::Result<()>>,
    _data_dir: tempfile::TempDir,
}

impl TestApp {
    /// Spawns the app with every compiled module, on a fresh database.
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// Spawns the app with extra command-line flags (e.g. `["--rate-limit-per-second", "1"]`).
    pub async fn spawn_with(flags: &[&str]) -> Self {
        let schemas: Vec<_> = bulkhead::modules::compiled().iter().map(|d| d.schema).collect();
        let database = TestDatabase::create(&schemas).await.unwrap();
        let data_dir = tempfile::tempdir().unwrap();
        let url = database.url();
        let data_dir_arg = data_dir.path().display().to_string();
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
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        // The bus and the jobs runtime start before the server accepts: wait until it does, so
        // a test that then disturbs the database does not disturb the start instead.
        let health = format!("http://{address}/health");
        eventually(Duration::from_secs(30), || async { Ok(client.get(&health).send().await.is_ok().then_some(())) })
            .await
            .expect("the app never started serving");
        Self { address, client, database, signing, verifier, shutdown, server, _data_dir: data_dir }
    }

    /// An access token the app accepts, for `subject` with `roles`, signed by a key the test
    /// added to the app's verifier (the users module signs real ones).
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
        self._data_dir.path().join("mailbox")
    }

    /// Graceful shutdown, as on SIGTERM; returns what the server returned.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.server.await?
    }
}
