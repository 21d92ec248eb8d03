//! PostgreSQL's own ceiling on this machine, measured beside every benchmark that loads it.

use std::process::Command;

use anyhow::Context;
use platform::db::EmbeddedPostgres;

/// `pgbench -N` (simple updates) with `clients` clients, on the same cluster.
pub(crate) fn pgbench(server: &EmbeddedPostgres, seconds: u64, clients: u32) -> anyhow::Result<f64> {
    let address = server.address();
    let password = secrecy::ExposeSecret::expose_secret(&address.password).to_owned();
    let run = |args: &[&str]| -> anyhow::Result<String> {
        let output = Command::new("pgbench")
            .args(["-h", "127.0.0.1", "-p", &address.port.to_string(), "-U", platform::db::embedded::SUPERUSER])
            .args(args)
            .env("PGPASSWORD", &password)
            .output()
            .context("pgbench is not installed (Debian: postgresql-contrib or postgresql-client)")?;
        anyhow::ensure!(output.status.success(), "pgbench failed: {}", String::from_utf8_lossy(&output.stderr));
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    run(&["-i", "-q", "-s", "10", "postgres"])?;
    let report = run(&["-N", "-c", &clients.to_string(), "-j", "2", "-T", &seconds.to_string(), "postgres"])?;
    report
        .lines()
        .find_map(|line| line.strip_prefix("tps = ")?.split_whitespace().next()?.parse().ok())
        .context("pgbench printed no tps")
}
