//! The application as separate OS processes, as it is deployed: the monolith (one process) or
//! the split (one process per module, the orders process as the edge), on an embedded
//! PostgreSQL the benchmark starts. The processes run this very binary in app mode
//! ([`APP_MODE`]), built with the benchmark's profile, so a release benchmark measures a
//! release app.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::process::{Child, Command};

use crate::app::{ADMIN_EMAIL, ADMIN_PASSWORD, Api};

/// Set in a child's environment: the bench binary then runs `bulkhead` instead of a benchmark.
pub(crate) const APP_MODE: &str = "BENCH_RUN_AS_BULKHEAD";

/// Every module, in the order the split starts them.
pub(crate) const MODULES: [&str; 5] = ["users", "inventory", "orders", "payments", "notifications"];

/// How the modules are spread over processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    Monolith,
    Split,
    /// The split with a database per process (`<DATABASE_URL>_<module>`, created by the
    /// caller) and events through Kafka (`BULKHEAD_KAFKA_BROKERS` in the environment).
    SplitOverKafka,
}

impl Layout {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Monolith => "monolith",
            Self::Split => "split",
            Self::SplitOverKafka => "split_over_kafka",
        }
    }
}

/// The running processes of one layout.
#[derive(Debug)]
pub(crate) struct Deployment {
    pub(crate) api: Api,
    processes: Vec<(&'static str, u16, Child)>,
}

impl Deployment {
    /// Starts `layout` on `database_url` (a role that may create roles), with its state in
    /// `data_dir` and `env` added to every process's environment, and waits until every
    /// process serves.
    ///
    /// # Errors
    /// A process that does not start within a minute, with what it logged.
    pub(crate) async fn start_with(
        layout: Layout,
        database_url: &str,
        data_dir: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let groups: Vec<(&'static str, Option<&str>)> = match layout {
            Layout::Monolith => vec![("monolith", None)],
            Layout::Split | Layout::SplitOverKafka => MODULES.iter().map(|m| (*m, Some(*m))).collect(),
        };
        let ports: Vec<u16> = groups.iter().map(|_| free_port()).collect::<anyhow::Result<_>>()?;
        let port_of =
            |module: &str| groups.iter().zip(&ports).find(|((name, _), _)| *name == module).map(|(_, port)| *port);
        let exe = std::env::current_exe().context("locating the bench binary")?;
        let mut processes = Vec::new();
        for ((name, hosted), port) in groups.iter().zip(&ports) {
            let log = std::fs::File::create(data_dir.join(format!("{name}.log"))).context("creating a log file")?;
            let mut command = Command::new(&exe);
            command
                .env(APP_MODE, "1")
                .env(
                    "DATABASE_URL",
                    match (layout, hosted) {
                        (Layout::SplitOverKafka, Some(module)) => format!("{database_url}_{module}"),
                        _ => database_url.to_owned(),
                    },
                )
                .env("BULKHEAD_ADDR", format!("127.0.0.1:{port}"))
                .env("BULKHEAD_DATA_DIR", data_dir)
                .env("BULKHEAD_ADMIN_EMAIL", ADMIN_EMAIL)
                .env("BULKHEAD_ADMIN_PASSWORD", ADMIN_PASSWORD)
                // One client sends far more than a person would.
                .env("BULKHEAD_RATE_LIMIT_PER_SECOND", "0")
                .env("BULKHEAD_TRUSTED_PROXIES", "127.0.0.1")
                .env("LOG_FORMAT", "json")
                .env("RUST_LOG", std::env::var("BENCH_APP_LOG").unwrap_or_else(|_| "warn".to_owned()))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .kill_on_drop(true);
            command.envs(env.iter().copied());
            if let Some(module) = hosted {
                command.env("BULKHEAD_MODULES", module);
                for other in MODULES {
                    if let Some(other_port) = port_of(other) {
                        command.env(
                            format!("BULKHEAD_{}_URL", other.to_uppercase()),
                            format!("http://127.0.0.1:{other_port}"),
                        );
                    }
                }
            }
            processes.push((*name, *port, command.spawn().context("starting an app process")?));
        }
        let edge = match layout {
            Layout::Monolith => ports[0],
            Layout::Split | Layout::SplitOverKafka => port_of("orders").context("no orders process")?,
        };
        let deployment = Self { api: Api::new(&format!("http://127.0.0.1:{edge}"))?, processes };
        deployment.wait_until_serving(data_dir).await?;
        Ok(deployment)
    }

    async fn wait_until_serving(&self, data_dir: &Path) -> anyhow::Result<()> {
        let started = Instant::now();
        // Serving, and consuming: processes start together, so some subscriptions wait a
        // moment for an event log another process creates.
        for (name, port, _) in &self.processes {
            let url = format!("http://127.0.0.1:{port}/health/ready");
            while !self.subscribed(&url).await {
                if started.elapsed() > Duration::from_secs(60) {
                    let log = std::fs::read_to_string(data_dir.join(format!("{name}.log"))).unwrap_or_default();
                    anyhow::bail!("the {name} process was not ready within a minute:\n{log}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    async fn subscribed(&self, readiness: &str) -> bool {
        let Ok(response) = self.api.client.get(readiness).send().await else { return false };
        let Ok(ready) = response.json::<serde_json::Value>().await else { return false };
        ready["data"]["checks"]["bus"].as_str().is_some_and(|bus| !bus.starts_with("waiting"))
    }

    /// The address of the process hosting `module`.
    pub(crate) fn url_of(&self, module: &str) -> Option<String> {
        let (_, port, _) = self.processes.iter().find(|(name, _, _)| *name == module || *name == "monolith")?;
        Some(format!("http://127.0.0.1:{port}"))
    }

    /// The processes' ids, in start order.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.processes.iter().filter_map(|(_, _, child)| child.id()).collect()
    }

    /// Resident memory summed over the processes: (now, peak), in MiB.
    pub(crate) fn rss_mib(&self) -> (f64, f64) {
        let [now, peak] = self.status_mib(["VmRSS:", "VmHWM:"]);
        (now, peak)
    }

    /// Each of `fields` (in kB) of the processes' `/proc/<pid>/status`, summed, in MiB: say
    /// `RssAnon:` for the heap and stacks the processes wrote, `RssFile:` for the pages of the
    /// binary and libraries they mapped (clean, shared with other processes running them, and
    /// reclaimable).
    pub(crate) fn status_mib<const N: usize>(&self, fields: [&str; N]) -> [f64; N] {
        let mut sums = [0.0; N];
        for (_, _, child) in &self.processes {
            if let Some(pid) = child.id() {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                for (sum, field) in sums.iter_mut().zip(fields) {
                    *sum += kib(&status, field) / 1024.0;
                }
            }
        }
        sums
    }

    /// Stops every process with SIGTERM and waits for it.
    pub(crate) async fn stop(mut self) {
        for (_, _, child) in &mut self.processes {
            if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM).ok();
            }
        }
        for (_, _, child) in &mut self.processes {
            tokio::time::timeout(Duration::from_secs(30), child.wait()).await.ok();
        }
    }
}

fn kib(status: &str, field: &str) -> f64 {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}
