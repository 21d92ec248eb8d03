//! The process: parses the command line, runs the command, exits with its outcome. The
//! `bulkhead` binary is this and nothing else, so the scenario tests can build the very same
//! program as a binary of their own (they start it as separate processes).

use std::process::ExitCode;

use clap::Parser;
use platform::telemetry::{LogTarget, OtlpTraces};
use tokio_util::sync::CancellationToken;

use crate::{Application, Cli, Command, cli};

/// `bulkhead [command]`.
pub fn main() -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(run()),
        Err(error) => {
            eprintln!("bulkhead: starting the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let Cli { config, command } = Cli::parse();
    let command = command.unwrap_or(Command::Serve);
    if matches!(command, Command::Healthcheck) {
        // Runs every few seconds in a container: no logs, no exporter, one answer.
        return match cli::healthcheck(&config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("bulkhead: unhealthy: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    // Only the server's work is worth a trace; the other commands log.
    let traces = if matches!(command, Command::Serve) { OtlpTraces::from_env(&crate::modules::ALL) } else { None };
    // The server logs to stdout, as containers expect; a command's stdout is its answer.
    let target = if matches!(command, Command::Serve) { LogTarget::Stdout } else { LogTarget::Stderr };
    let telemetry = match platform::telemetry::init(Some(config.log_format()), target, traces) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("bulkhead: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match command {
        Command::Serve => serve(config).await,
        Command::Migrate { action } => cli::migrate(&config, action).await,
        Command::Bus { action } => cli::bus(&config, action).await,
        Command::Jobs { action } => cli::jobs(&config, action).await,
        Command::Database { action } => cli::database(&config, action).await,
        Command::ServiceKeys { action } => cli::service_keys(&config, action),
        Command::Modules { action } => cli::modules(action),
        Command::Healthcheck => Ok(()),
    };
    if let Err(error) = &outcome {
        tracing::error!("{error:#}");
        eprintln!("\nbulkhead: {error:#}");
    }
    // The spans of the last requests and of the shutdown itself are still buffered.
    telemetry.shutdown().await;
    if outcome.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

async fn serve(config: crate::Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let mail = mail_destination(&config);
    let application = tokio::select! {
        built = Application::build(config) => built?,
        () = shutdown.cancelled() => return Ok(()),
    };
    let address = application.local_addr()?;
    let base = format!("http://{address}");
    println!(
        "\nBulkhead is ready\n  API      {base}/api/v1\n  Docs     {base}/api/docs\n  Metrics  {base}/metrics\n  Health   {base}/health{mail}\n"
    );
    tracing::info!(%address, "serving");
    application.run_until_stopped(shutdown).await
}

/// Where the email this process sends goes, for the start-up banner.
fn mail_destination(config: &crate::Config) -> String {
    #[cfg(feature = "notifications")]
    if config.modules.is_empty() || config.modules.iter().any(|m| m == "notifications") {
        return format!("\n  {}", config.notifications.destination(&config.data_dir));
    }
    let _ = config;
    String::new()
}

/// SIGINT (Ctrl-C) or SIGTERM (container stop) starts a graceful shutdown.
async fn stop_on_signal(shutdown: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested; draining");
    shutdown.cancel();
}
