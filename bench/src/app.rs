//! The real application, started in this process on port 0 with every compiled module and an
//! embedded PostgreSQL of its own in a temporary data directory, driven over HTTP like a
//! client (as the scenario tests' `TestApp` does).

use std::time::{Duration, Instant};

use anyhow::Context;
use bulkhead::{Application, Cli};
use clap::Parser;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The first admin the app creates on its first start.
pub(crate) const ADMIN_EMAIL: &str = "admin@bench.example";
pub(crate) const ADMIN_PASSWORD: &str = "bench operator passphrase";
/// The password of every account the benchmarks register.
pub(crate) const PASSWORD: &str = "a perfectly fine passphrase";

/// A client of the application's API at one base URL, whatever runs behind it.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    pub(crate) client: reqwest::Client,
    base: String,
}

/// A running application and a client for it.
#[derive(Debug)]
pub(crate) struct BenchApp {
    pub(crate) api: Api,
    shutdown: CancellationToken,
    server: JoinHandle<anyhow::Result<()>>,
    _data_dir: tempfile::TempDir,
}

impl BenchApp {
    /// Starts the app with the per-client rate limit off (the benchmark is one client sending
    /// far more than a person would) and the demo catalogue seeded, and waits until it serves.
    ///
    /// # Errors
    /// When the app does not build or start serving within 60 seconds.
    pub(crate) async fn start() -> anyhow::Result<Self> {
        let data_dir = tempfile::tempdir().context("creating the data directory")?;
        let data_dir_arg = data_dir.path().to_str().context("the temporary directory's path is not UTF-8")?;
        let args = [
            "bulkhead",
            "--addr",
            "127.0.0.1:0",
            "--data-dir",
            data_dir_arg,
            "--admin-email",
            ADMIN_EMAIL,
            "--admin-password",
            ADMIN_PASSWORD,
            "--rate-limit-per-second",
            "0",
            "--demo-data",
            "true",
        ];
        let mut config = Cli::try_parse_from(args).context("building the app's configuration")?.config;
        // A fresh embedded cluster on every run, whatever the environment points at.
        config.database_url = None;
        config.jobs_database_url = None;
        config.modules.clear();

        let application = with_stdout_on_stderr(Application::build(config)).await?.context("building the app")?;
        let address = application.local_addr()?;
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(application.run_until_stopped(shutdown.clone()));
        let app = Self { api: Api::new(&format!("http://{address}"))?, shutdown, server, _data_dir: data_dir };
        app.api.wait_until_serving().await?;
        Ok(app)
    }

    /// Graceful shutdown, as on SIGTERM: the server drains, the embedded cluster stops.
    ///
    /// # Errors
    /// What the server returned.
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.server.await.context("the app's task")?
    }
}

impl Api {
    /// A client of the API at `base` (`http://host:port`).
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub(crate) fn new(base: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        Ok(Self { client, base: base.to_owned() })
    }

    async fn wait_until_serving(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        while self.client.get(self.url("/health")).send().await.is_err() {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "the app did not serve within 60 seconds");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Registers a customer account with [`PASSWORD`].
    ///
    /// # Errors
    /// Any answer but 201.
    pub(crate) async fn register(&self, email: &str) -> anyhow::Result<()> {
        let body = json!({ "email": email, "password": PASSWORD, "display_name": "Bench" });
        let response = self.client.post(self.url("/api/v1/users")).json(&body).send().await?;
        expect(response, StatusCode::CREATED, "registering").await.map(drop)
    }

    /// Signs in; returns the access token.
    ///
    /// # Errors
    /// Any answer but 200.
    pub(crate) async fn sign_in(&self, email: &str, password: &str) -> anyhow::Result<String> {
        let body = json!({ "email": email, "password": password });
        let response = self.client.post(self.url("/api/v1/auth/login")).json(&body).send().await?;
        let body = expect(response, StatusCode::OK, "signing in").await?;
        body["data"]["access_token"].as_str().map(str::to_owned).context("the sign-in answer has no access_token")
    }
}

/// The JSON body of `response`, or an error with what it said instead of `status`.
///
/// # Errors
/// Another status, or a body that is not JSON.
pub(crate) async fn expect(response: reqwest::Response, status: StatusCode, doing: &str) -> anyhow::Result<Value> {
    let actual = response.status();
    if actual != status {
        let body = response.text().await.unwrap_or_default();
        anyhow::bail!("{doing}: expected {status}, got {actual}: {body}");
    }
    response.json().await.with_context(|| format!("{doing}: the answer is not JSON"))
}

/// Runs `work` with the process's stdout pointing at stderr: on first start the app announces
/// its admin on stdout, and stdout is the benchmark's report (one JSON object with `--json`).
async fn with_stdout_on_stderr<T>(work: impl Future<Output = T>) -> anyhow::Result<T> {
    use std::io::Write;
    let stdout = nix::unistd::dup(std::io::stdout()).context("duplicating stdout")?;
    nix::unistd::dup2_stdout(std::io::stderr()).context("pointing stdout at stderr")?;
    let output = work.await;
    std::io::stdout().flush().ok();
    nix::unistd::dup2_stdout(&stdout).context("restoring stdout")?;
    Ok(output)
}
