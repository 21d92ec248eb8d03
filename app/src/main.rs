use std::process::ExitCode;

use bulkhead::{Application, Cli, Command, cli};
use clap::Parser;
use platform::telemetry::OtlpTraces;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
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
    let traces = if matches!(command, Command::Serve) { OtlpTraces::from_env(&module_names()) } else { None };
    let telemetry = match platform::telemetry::init(Some(config.log_format()), traces) {
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

/// The compiled-in modules, whose crates' spans name their module.
fn module_names() -> Vec<&'static str> {
    bulkhead::modules::compiled().iter().map(|descriptor| descriptor.schema.name).collect()
}

async fn serve(config: bulkhead::Config) -> anyhow::Result<()> {
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

/// Where the email this process sends goes, for the start-up banner: a newcomer opens the
/// mailbox's `.eml` files to see what was sent.
fn mail_destination(config: &bulkhead::Config) -> String {
    let hosted = config.modules.is_empty() || config.modules.iter().any(|m| m == "notifications");
    if !cfg!(feature = "notifications") || !hosted {
        return String::new();
    }
    match config.mail_transport {
        bulkhead::config::MailTransportKind::Mailbox => {
            let dir = config.mailbox_dir.clone().unwrap_or_else(|| config.data_dir.join("mailbox"));
            format!("\n  Mailbox  {} (one .eml per email sent)", dir.display())
        }
        bulkhead::config::MailTransportKind::Smtp => format!(
            "\n  Mail     smtp://{}:{}",
            config.smtp_host.as_deref().unwrap_or_default(),
            config.smtp_port.unwrap_or_default()
        ),
    }
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
