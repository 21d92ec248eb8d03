//! The split topology for tests: each module in its own OS process, started from the built
//! binary with `BULKHEAD_MODULES` set to that module and the URLs of all the others, on one
//! database server where each module has its own role, or ([`Backends::OverKafka`]) each
//! with a database of its own and events through Kafka. The orders process is the edge.
//!
//! Processes can be stopped, killed, frozen and restarted one by one, for failure tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use platform::testing::{TestDatabase, eventually};
use secrecy::ExposeSecret;
use tokio::process::{Child, Command};

use crate::{ADMIN_EMAIL, ADMIN_PASSWORD};

/// One process per module, in the order they are started.
const MODULES: [&str; 5] = ["users", "inventory", "orders", "payments", "notifications"];

/// The module whose process clients talk to.
pub(crate) const EDGE: &str = "orders";

/// Where the processes keep their data and how their events travel.
#[derive(Debug)]
pub(crate) enum Backends<'a> {
    /// One database for all, events through the publishers' outboxes.
    Shared(&'a TestDatabase),
    /// A database per module, events through Kafka topics under `prefix`.
    OverKafka { databases: Vec<(&'static str, &'a TestDatabase)>, brokers: String, prefix: String },
}

impl Backends<'_> {
    /// What `module`'s process is told about its database and the event transport.
    fn env_of(&self, module: &str) -> Vec<(String, String)> {
        match self {
            Self::Shared(database) => vec![("DATABASE_URL".to_owned(), database.url().expose_secret().to_owned())],
            Self::OverKafka { databases, brokers, prefix } => {
                let database = databases.iter().find(|(name, _)| *name == module).expect("a database per module").1;
                vec![
                    ("DATABASE_URL".to_owned(), database.url().expose_secret().to_owned()),
                    ("BULKHEAD_KAFKA_BROKERS".to_owned(), brokers.clone()),
                    ("BULKHEAD_KAFKA_TOPIC_PREFIX".to_owned(), prefix.clone()),
                ]
            }
        }
    }
}

/// The modules' processes of one test.
#[derive(Debug)]
pub struct SplitProcesses {
    processes: Vec<ModuleProcess>,
    logs: PathBuf,
}

#[derive(Debug)]
struct ModuleProcess {
    module: &'static str,
    port: u16,
    command: Vec<(String, String)>,
    args: Vec<String>,
    child: Option<Child>,
    /// Where the log stood when the latest start began: what the process said before that
    /// belongs to an earlier life, perhaps on another port.
    log_from: usize,
}

/// The `bulkhead` program as the test package builds it (`src/bin/bulkhead-process.rs`, the
/// same `main`), next to the test executable: always built from the current code.
fn binary() -> PathBuf {
    let test_executable = std::env::current_exe().expect("the test executable's path");
    let dir = test_executable.parent().and_then(Path::parent).expect("target/<profile>");
    dir.join(format!("bulkhead-process{}", std::env::consts::EXE_SUFFIX))
}

impl SplitProcesses {
    /// Starts every module's process and waits until each serves.
    pub(crate) async fn start(backends: &Backends<'_>, data_dir: &Path, flags: &[&str], env: &[(&str, &str)]) -> Self {
        let logs = data_dir.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        for attempt in 1..=3 {
            let mut split = Self::configure(backends, data_dir, flags, env, logs.clone());
            for process in &mut split.processes {
                process.spawn(&split.logs);
            }
            match split.wait_until_serving().await {
                Ok(()) => {
                    split.wait_until_subscribed().await;
                    return split;
                }
                // Another test took a port between choosing it and binding it: choose again.
                Err(log) if log.contains("Address already in use") && attempt < 3 => {
                    split.kill_all();
                }
                Err(log) => panic!("the split topology did not start:\n{log}"),
            }
        }
        unreachable!("the last attempt panics or returns")
    }

    fn configure(
        backends: &Backends<'_>,
        data_dir: &Path,
        flags: &[&str],
        env: &[(&str, &str)],
        logs: PathBuf,
    ) -> Self {
        // Ports are chosen before any process starts: each needs the others' URLs.
        let listeners: Vec<std::net::TcpListener> =
            MODULES.iter().map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let ports: Vec<u16> = listeners.iter().map(|l| l.local_addr().unwrap().port()).collect();
        drop(listeners);
        let mut shared = vec![
            ("BULKHEAD_DATA_DIR".to_owned(), data_dir.display().to_string()),
            ("BULKHEAD_DB_POOL_SIZE".to_owned(), "3".to_owned()),
            ("BULKHEAD_ADMIN_EMAIL".to_owned(), ADMIN_EMAIL.to_owned()),
            ("BULKHEAD_ADMIN_PASSWORD".to_owned(), ADMIN_PASSWORD.to_owned()),
            // Requests reach the other processes through the edge, on loopback.
            ("BULKHEAD_TRUSTED_PROXIES".to_owned(), "127.0.0.1".to_owned()),
            ("BULKHEAD_SHUTDOWN_TIMEOUT".to_owned(), "10s".to_owned()),
            ("LOG_FORMAT".to_owned(), "json".to_owned()),
            ("RUST_LOG".to_owned(), "info,sqlx=warn".to_owned()),
        ];
        for (module, port) in MODULES.iter().zip(&ports) {
            shared.push((format!("BULKHEAD_{}_URL", module.to_uppercase()), format!("http://127.0.0.1:{port}")));
        }
        shared.extend(env.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())));
        let processes = MODULES
            .iter()
            .zip(ports)
            .map(|(module, port)| {
                // What a test passes in `env` wins over the backends' settings.
                let mut command = backends.env_of(module);
                command.extend(shared.iter().cloned());
                command.push(("BULKHEAD_MODULES".to_owned(), (*module).to_owned()));
                command.push(("BULKHEAD_ADDR".to_owned(), format!("127.0.0.1:{port}")));
                // Spans, when exported, say which process made them.
                command.push(("OTEL_SERVICE_NAME".to_owned(), format!("bulkhead-{module}")));
                ModuleProcess {
                    module,
                    port,
                    command,
                    args: flags.iter().map(|f| (*f).to_owned()).collect(),
                    child: None,
                    log_from: 0,
                }
            })
            .collect();
        Self { processes, logs }
    }

    /// Waits until every process answers `/health`; the logs of those that died if not.
    async fn wait_until_serving(&mut self) -> Result<(), String> {
        for index in 0..self.processes.len() {
            self.wait_until_module_serves(index).await?;
        }
        Ok(())
    }

    async fn wait_until_module_serves(&mut self, index: usize) -> Result<(), String> {
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{}/health", self.processes[index].port);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            // Whoever took the port first answers `/health`, so the answer counts only once
            // this process's own log says it bound the port.
            let bound = self.bound_its_port(self.processes[index].module);
            if bound == Some(true) && client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            let process = &mut self.processes[index];
            let exited = process.child.as_mut().and_then(|child| child.try_wait().ok().flatten());
            if exited.is_some() || bound == Some(false) || tokio::time::Instant::now() > deadline {
                let module = process.module;
                return Err(format!("{module} ({exited:?}):\n{}", self.log_of(module)));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every process's subscriptions consume: processes start together, so some
    /// wait a moment for an event log another process creates.
    async fn wait_until_subscribed(&self) {
        let client = reqwest::Client::new();
        for process in &self.processes {
            let url = format!("http://127.0.0.1:{}/health/ready", process.port);
            let subscribed = eventually(Duration::from_secs(30), || async {
                let ready: serde_json::Value = client.get(&url).send().await?.json().await?;
                Ok((!ready["data"]["checks"]["bus"].as_str().unwrap_or_default().starts_with("waiting")).then_some(()))
            })
            .await;
            assert!(
                subscribed.is_ok(),
                "{}'s subscriptions never started:\n{}",
                process.module,
                self.log_of(process.module)
            );
        }
    }

    /// The address of the edge, which clients use.
    pub fn edge(&self) -> SocketAddr {
        self.address_of(EDGE)
    }

    /// The address of the process hosting `module`.
    pub fn address_of(&self, module: &str) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.process(module).port))
    }

    fn process(&self, module: &str) -> &ModuleProcess {
        self.processes.iter().find(|p| p.module == module).unwrap_or_else(|| panic!("no process for {module}"))
    }

    fn process_mut(&mut self, module: &str) -> &mut ModuleProcess {
        self.processes.iter_mut().find(|p| p.module == module).unwrap_or_else(|| panic!("no process for {module}"))
    }

    /// Whether `module`'s latest start bound its port (`serving`) or found it taken; `None`
    /// before either. The log is appended to across starts, so only what the latest start
    /// wrote counts: an earlier `serving` must not vouch for whoever answers on the port now.
    fn bound_its_port(&self, module: &str) -> Option<bool> {
        let log = self.log_of(module);
        let latest = log.get(self.process(module).log_from..).unwrap_or_default();
        let served = latest.rfind("\"message\":\"serving\"");
        let refused = latest.rfind("Address already in use");
        match (served, refused) {
            (None, None) => None,
            (served, refused) => Some(served > refused),
        }
    }

    /// What `module`'s process has logged so far.
    pub fn log_of(&self, module: &str) -> String {
        std::fs::read_to_string(self.logs.join(format!("{module}.log"))).unwrap_or_default()
    }

    /// Kills `module`'s process at once (SIGKILL), as a crash would.
    pub async fn kill(&mut self, module: &str) {
        if let Some(mut child) = self.process_mut(module).child.take() {
            child.start_kill().ok();
            child.wait().await.ok();
        }
    }

    /// Stops `module`'s process gracefully (SIGTERM) and returns how it exited.
    pub async fn terminate(&mut self, module: &str) -> ExitStatus {
        let mut child = self.process_mut(module).child.take().unwrap_or_else(|| panic!("{module} is not running"));
        signal(&child, Signal::SIGTERM);
        tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .unwrap_or_else(|_| panic!("{module} did not stop within 30 s of SIGTERM"))
            .unwrap()
    }

    /// Freezes `module`'s process (SIGSTOP): it keeps its connections but answers nothing,
    /// like a process stuck in a long pause. Panics, with the process's log, unless the
    /// kernel reports it stopped: a test that froze nothing would prove nothing.
    pub fn freeze(&self, module: &str) {
        let child = self.process(module).child.as_ref().expect("running");
        signal(child, Signal::SIGSTOP);
        let pid = child.id().unwrap_or_else(|| panic!("{module} has exited:\n{}", self.log_of(module)));
        // The stop takes effect at once, but `/proc` may show it a moment later.
        for _ in 0..100 {
            if process_state(pid) == Some('T') {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{module} (pid {pid}, state {:?}) did not stop:\n{}", process_state(pid), self.log_of(module));
    }

    /// Lets a frozen process run again (SIGCONT).
    pub fn thaw(&self, module: &str) {
        signal(self.process(module).child.as_ref().expect("running"), Signal::SIGCONT);
    }

    /// Starts `module`'s process again, on its port, and waits until it serves.
    pub async fn restart(&mut self, module: &str) {
        let logs = self.logs.clone();
        let index = self.processes.iter().position(|p| p.module == module).expect("a module of the split");
        self.processes[index].spawn(&logs);
        if let Err(log) = self.wait_until_module_serves(index).await {
            panic!("{module} did not start again:\n{log}");
        }
    }

    /// Stops every process with SIGTERM (the edge first, as a rolling stop would); each must
    /// drain and exit 0.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let mut failures = Vec::new();
        let order = std::iter::once(EDGE).chain(MODULES.iter().copied().filter(|m| *m != EDGE));
        for module in order {
            if self.process(module).child.is_none() {
                continue;
            }
            let status = self.terminate(module).await;
            if !status.success() {
                failures.push(format!("{module} exited with {status}:\n{}", self.log_of(module)));
            }
        }
        anyhow::ensure!(failures.is_empty(), "{}", failures.join("\n"));
        Ok(())
    }

    fn kill_all(&mut self) {
        for process in &mut self.processes {
            if let Some(child) = process.child.as_mut() {
                child.start_kill().ok();
            }
            process.child = None;
        }
    }
}

impl ModuleProcess {
    fn spawn(&mut self, logs: &Path) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.join(format!("{}.log", self.module)))
            .unwrap();
        self.log_from = usize::try_from(log.metadata().unwrap().len()).expect("a log that fits in memory");
        let mut command = Command::new(binary());
        command
            .args(&self.args)
            // Nothing from the test's own environment leaks in but what a process needs.
            .env_clear()
            .envs(std::env::vars().filter(|(name, _)| matches!(name.as_str(), "PATH" | "HOME" | "TMPDIR")))
            .envs(self.command.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true);
        self.child = Some(command.spawn().unwrap_or_else(|e| panic!("starting {}: {e}", binary().display())));
    }
}

/// The state letter of process `pid` in `/proc/<pid>/stat` (`T` stopped, `Z` exited and not
/// yet reaped), if it exists.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces; the state follows it.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn signal(child: &Child, signal: Signal) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        kill(Pid::from_raw(pid), signal).ok();
    }
}

impl Drop for SplitProcesses {
    fn drop(&mut self) {
        // A failing test shows what the processes said.
        if std::thread::panicking() {
            for process in &self.processes {
                let log = self.log_of(process.module);
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- last lines of {} ---", process.module);
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        self.kill_all();
    }
}

/// Waits until `module`'s process answers `/health` at `address`.
///
/// # Errors
/// Not within `timeout`.
pub async fn wait_for_health(address: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let url = format!("http://{address}/health");
    eventually(timeout, || async { Ok(client.get(&url).send().await.is_ok().then_some(())) }).await
}
