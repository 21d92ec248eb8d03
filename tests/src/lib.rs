//! Test support for cross-module scenarios: the real application spawned in process on port
//! 0 against a database of its own, driven over HTTP like a client.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test support fails loudly")]

use std::net::SocketAddr;
use std::time::Duration;

use bulkhead::{Application, Cli, Config};
use clap::Parser;
use platform::testing::TestDatabase;
use secrecy::ExposeSecret;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use platform::testing::eventually;

/// The application running in this process.
#[derive(Debug)]
pub struct TestApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub database: TestDatabase,
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
        ];
        args.extend_from_slice(flags);
        let config: Config = Cli::try_parse_from(args).unwrap().config;
        let application = Application::build(config).await.unwrap();
        let address = application.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(application.run_until_stopped(shutdown.clone()));
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        Self { address, client, database, shutdown, server, _data_dir: data_dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// Graceful shutdown, as on SIGTERM; returns what the server returned.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.server.await?
    }
}
