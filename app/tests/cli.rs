//! The `bulkhead` binary as a user runs it: `cargo run` with no configuration, Ctrl-C,
//! a crash, bad configuration.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use platform::testing::{embedded_server_pid as postmaster_pid, process_running as is_running};

/// A running `bulkhead serve` with its own data dir and port.
struct Running {
    child: Child,
    base: String,
    output: mpsc::Receiver<String>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn bulkhead(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bulkhead"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("BULKHEAD_DATA_DIR", data_dir)
        .env("LOG_FORMAT", "json")
        .stdin(Stdio::null());
    command
}

impl Running {
    fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, &[])
    }

    /// Starts with extra environment variables.
    fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut child = bulkhead(data_dir)
            .env("BULKHEAD_ADDR", format!("127.0.0.1:{port}"))
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (sender, output) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let sender = sender.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = sender.send(line);
                }
            });
        }
        let running = Self { child, base: format!("http://127.0.0.1:{port}"), output };
        running.wait_until_healthy();
        running
    }

    fn wait_until_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if is_healthy(&self.base) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no healthy answer within 60s; output:\n{}", self.drain());
    }

    fn drain(&self) -> String {
        self.output.try_iter().collect::<Vec<_>>().join("\n")
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).unwrap())
    }

    /// Sends `signal` and waits for the process to exit; returns its output.
    fn stop_with(mut self, signal: Signal) -> (bool, String) {
        kill(self.pid(), signal).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50));
                return (status.success(), self.drain());
            }
            assert!(Instant::now() < deadline, "did not stop within 30s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One blocking `GET` over a plain socket, with extra header lines; the whole answer (the tests
/// need no more than its status line).
fn get(base: &str, path: &str, headers: &str) -> Option<String> {
    use std::io::{Read, Write};
    let host = base.strip_prefix("http://")?;
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut answer = String::new();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n").ok()?;
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

fn is_healthy(base: &str) -> bool {
    get(base, "/health", "").is_some_and(|answer| answer.starts_with("HTTP/1.1 200"))
}

#[test]
fn a_first_start_initialises_the_database_and_ctrl_c_stops_everything() {
    let data_dir = tempfile::tempdir().unwrap();
    let app = Running::start(data_dir.path());
    let server = postmaster_pid(data_dir.path()).expect("the embedded server runs");

    let (success, output) = app.stop_with(Signal::SIGINT);
    assert!(success, "{output}");
    assert!(output.contains("initialising the embedded PostgreSQL cluster"), "{output}");
    assert!(
        output.contains("Bulkhead is ready") && output.contains("/api/docs") && output.contains("/metrics"),
        "{output}"
    );
    assert!(output.contains("embedded PostgreSQL stopped"), "{output}");
    assert!(!is_running(server), "no orphan PostgreSQL after Ctrl-C");
    assert!(postmaster_pid(data_dir.path()).is_none());

    // A second start reuses the cluster; SIGTERM stops it as cleanly.
    let app = Running::start(data_dir.path());
    let server = postmaster_pid(data_dir.path()).unwrap();
    let (success, output) = app.stop_with(Signal::SIGTERM);
    assert!(success, "{output}");
    assert!(!output.contains("initialising"), "the second start reuses the data: {output}");
    assert!(!is_running(server), "no orphan PostgreSQL after SIGTERM");
}

#[test]
fn after_the_app_is_killed_the_next_start_recovers_its_database() {
    let data_dir = tempfile::tempdir().unwrap();
    let app = Running::start(data_dir.path());
    let orphan = postmaster_pid(data_dir.path()).unwrap();

    let (_, _) = app.stop_with(Signal::SIGKILL);
    assert!(is_running(orphan), "a killed app leaves its server behind");

    let app = Running::start(data_dir.path());
    let replacement = postmaster_pid(data_dir.path()).unwrap();
    assert_ne!(orphan, replacement);
    assert!(!is_running(orphan), "the orphan was stopped");
    let (success, output) = app.stop_with(Signal::SIGINT);
    assert!(success, "{output}");
    assert!(output.contains("a previous run left its PostgreSQL running"), "{output}");
    assert!(!is_running(replacement));
}

#[test]
fn missing_postgres_binaries_give_one_clear_message() {
    let data_dir = tempfile::tempdir().unwrap();
    let output =
        bulkhead(data_dir.path()).env("BULKHEAD_PG_BIN_DIR", data_dir.path().join("nothing")).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PostgreSQL server binaries (initdb and postgres"), "{stderr}");
    assert!(stderr.contains("apt-get install postgresql") && stderr.contains("DATABASE_URL"), "{stderr}");
}

#[test]
fn invalid_configuration_names_the_variable_and_starts_nothing() {
    let data_dir = tempfile::tempdir().unwrap();
    let output = bulkhead(data_dir.path()).env("BULKHEAD_ADDR", "everywhere").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("BULKHEAD_ADDR"), "{stderr}");
    assert!(!data_dir.path().join("postgres").exists(), "nothing was started");

    let output = bulkhead(data_dir.path()).env("BULKHEAD_MODULES", "warehouse").output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("BULKHEAD_MODULES") && stderr.contains("warehouse"), "{stderr}");
}

#[test]
fn migrate_status_and_up_run_against_the_embedded_database_and_stop_it() {
    let data_dir = tempfile::tempdir().unwrap();
    for action in [&["migrate", "up"][..], &["migrate", "status"][..]] {
        let output = bulkhead(data_dir.path()).args(action).output().unwrap();
        assert!(output.status.success(), "{action:?}: {}", String::from_utf8_lossy(&output.stderr));
        assert!(postmaster_pid(data_dir.path()).is_none(), "{action:?} leaves no server running");
    }
    let output = bulkhead(data_dir.path()).args(["migrate", "down", "--module", "nothing"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no module `nothing`"));

    // The jobs storage is migrated and listed with the modules, and alone as `jobs`.
    let output = bulkhead(data_dir.path()).args(["migrate", "status", "--module", "jobs"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let rows: Vec<&str> = stdout.lines().filter(|line| line.starts_with("jobs ")).collect();
    assert!(
        rows.len() >= 20 && rows.iter().all(|row| row.contains(" apalis ") && !row.ends_with("pending")),
        "{stdout}"
    );
    assert!(!stdout.lines().any(|line| line.starts_with("users ")), "only the jobs schema: {stdout}");
    let output = bulkhead(data_dir.path()).args(["migrate", "down", "--module", "jobs"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot be reverted"));
}

#[test]
fn jobs_failed_lists_nothing_on_a_fresh_database() {
    let data_dir = tempfile::tempdir().unwrap();
    assert!(bulkhead(data_dir.path()).args(["migrate", "up"]).output().unwrap().status.success());
    let output =
        bulkhead(data_dir.path()).args(["jobs", "failed", "--queue", "orders.payment_timeout"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("0 failed job(s)"));
    assert!(postmaster_pid(data_dir.path()).is_none(), "the command leaves no server running");
}

#[test]
fn bus_commands_report_status_and_refuse_unknown_targets_clearly() {
    let data_dir = tempfile::tempdir().unwrap();
    assert!(bulkhead(data_dir.path()).args(["migrate", "up"]).output().unwrap().status.success());
    let output = bulkhead(data_dir.path()).args(["bus", "status"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("SUBSCRIPTION") && stdout.contains("LAG"), "{stdout}");

    let output = bulkhead(data_dir.path()).args(["bus", "dead-letters"]).output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("0 dead letter(s)"));

    let missing = "0193b5f2-8a4e-7c3d-9a51-3f0c2b6d7e81";
    let output = bulkhead(data_dir.path()).args(["bus", "replay", missing]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains(&format!("no dead letter {missing}")));

    let output = bulkhead(data_dir.path()).args(["bus", "rewind", "orders.nothing", "--to", "1"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no subscription orders.nothing"));
    assert!(postmaster_pid(data_dir.path()).is_none(), "the commands leave no server running");
}

#[test]
fn healthcheck_exits_0_while_the_server_answers_and_1_once_it_is_gone() {
    let data_dir = tempfile::tempdir().unwrap();
    let app = Running::start(data_dir.path());
    let port = app.base.rsplit(':').next().unwrap().to_owned();
    // As in a container: the server listens on every address, the check asks loopback.
    let healthcheck = || {
        bulkhead(data_dir.path()).env("BULKHEAD_ADDR", format!("0.0.0.0:{port}")).arg("healthcheck").output().unwrap()
    };
    let output = healthcheck();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.stdout.is_empty(), "a health check prints nothing when healthy");

    let (success, output) = app.stop_with(Signal::SIGTERM);
    assert!(success, "{output}");
    let output = healthcheck();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unhealthy"));
}

#[test]
fn sigterm_exports_the_spans_still_buffered_to_the_otlp_endpoint() {
    let collector = platform::testing::otlp::Collector::start().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let endpoint = collector.endpoint();
    // Batches large and rare enough that nothing leaves before the shutdown does.
    let app = Running::start_with(
        data_dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", "bulkhead-under-test"),
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "65536"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "65536"),
        ],
    );
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("traceparent: 00-{trace_id}-00f067aa0ba902b7-01\r\n");
    let answer = get(&app.base, "/api/v1/products?limit=1", &traceparent).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(collector.spans().is_empty(), "spans are batched, not sent one by one");

    let (success, output) = app.stop_with(Signal::SIGTERM);
    assert!(success, "{output}");
    let spans = collector.trace(trace_id);
    let request = spans.iter().find(|span| span.name == "GET /api/v1/products");
    let request = request.unwrap_or_else(|| panic!("the request's span was not exported: {spans:#?}"));
    assert_eq!(request.parent_span_id, "00f067aa0ba902b7", "it continues the caller's trace");
    assert_eq!(request.service, "bulkhead-under-test", "OTEL_SERVICE_NAME names the service");
    assert_eq!(request.attribute("bulkhead.module"), Some("inventory"));
}

#[test]
fn the_checked_in_module_map_is_what_the_manifests_declare() {
    let compiled = bulkhead::modules::compiled();
    if compiled.len() < bulkhead::modules::ALL.len() {
        return; // A binary built without some modules draws a smaller map; docs show them all.
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/modules.md");
    let checked_in = std::fs::read_to_string(path).unwrap();
    let generated = bulkhead::map::render(&compiled);
    assert!(
        checked_in == generated,
        "docs/modules.md is stale: run `cargo run -- modules map` and commit it\n--- generated:\n{generated}"
    );
}
