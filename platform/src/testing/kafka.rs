//! A Kafka-protocol broker for tests (features `testing` and `kafka`; ADR 0026): the pinned
//! noida-db that `scripts/kafka-broker` installs, started on loopback with a fresh data
//! directory. One broker is shared by a test process ([`shared_broker`]); a test that stops
//! and restarts its broker starts its own ([`TestBroker::start`]).
//!
//! Brokers die with the test process: the script's watchdog stops a broker once the process
//! that started it is gone, so a failed or killed run leaves none behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::OnceCell;

use crate::bus::kafka::KafkaConfig;

static SHARED: OnceCell<TestBroker> = OnceCell::const_new();

/// The broker shared by this test process, started on first use.
///
/// # Errors
/// The broker could not be installed or started.
pub async fn shared_broker() -> anyhow::Result<&'static TestBroker> {
    SHARED.get_or_try_init(TestBroker::start).await
}

/// A running test broker.
#[derive(Debug)]
pub struct TestBroker {
    dir: tempfile::TempDir,
    port: u16,
    child: Mutex<Option<u32>>,
}

impl TestBroker {
    /// Starts a broker of its own on a free loopback port.
    ///
    /// # Errors
    /// The broker could not be installed or started.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("bulkhead-kafka-").tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let broker = Self { dir, port, child: Mutex::new(None) };
        broker.launch("start").await?;
        Ok(broker)
    }

    /// `bootstrap.servers` for this broker.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Transport settings on this broker, with topics under `prefix` and `partitions` each.
    pub fn config(&self, prefix: &str, partitions: i32) -> KafkaConfig {
        KafkaConfig { topic_prefix: prefix.to_owned(), partitions, ..KafkaConfig::new(self.brokers()) }
    }

    /// Stops the broker gracefully (its data stays).
    pub fn stop(&self) {
        if let Some(pid) = self.child.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            kill(pid);
        }
    }

    /// Starts the stopped broker again on the same port, with the same data.
    ///
    /// # Errors
    /// It did not come back.
    pub async fn restart(&self) -> anyhow::Result<()> {
        self.stop();
        self.launch("restart").await
    }

    /// Starts the broker through the script (`start`: fresh data; `restart`: kept), owned by
    /// this process, and waits until it listens.
    async fn launch(&self, how: &'static str) -> anyhow::Result<()> {
        let (dir, port, owner) =
            (self.dir.path().display().to_string(), self.port.to_string(), std::process::id().to_string());
        let printed = tokio::task::spawn_blocking(move || run_script(&[how, &dir, &port, &owner])).await??;
        let pid: u32 = printed.lines().last().unwrap_or_default().parse().context("the broker's PID")?;
        *self.child.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(pid);
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default();
        anyhow::bail!("the test broker did not listen on {} within 20 s; its log:\n{log}", self.brokers())
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops the broker gracefully (SIGTERM), as an operator would, and waits until it is gone;
/// SIGKILL if it takes longer than 10 s. (Killed outright, the test broker can lose records it
/// had acknowledged but not yet written, as a single Kafka broker without replicas can.)
fn kill(pid: u32) {
    use nix::sys::signal::{Signal, kill};
    let Ok(pid) = i32::try_from(pid) else { return };
    let pid = nix::unistd::Pid::from_raw(pid);
    let _ = kill(pid, Signal::SIGTERM);
    // Not our child (the script started it): wait until it is gone, so its port is free.
    let gone = |within: Duration| {
        let until = Instant::now() + within;
        while kill(pid, None).is_ok() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        kill(pid, None).is_err()
    };
    if !gone(Duration::from_secs(10)) {
        let _ = kill(pid, Signal::SIGKILL);
        gone(Duration::from_secs(5));
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka-broker")
}

/// Runs `scripts/kafka-broker` (which installs the broker on first use); returns what it printed.
fn run_script(args: &[&str]) -> anyhow::Result<String> {
    let script = script();
    let output = Command::new(&script)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(output.status.success(), "{} {} failed: {}", script.display(), args.join(" "), output.status);
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}
