//! `catalog-service`: parses flags, loads data and certificates, sets up tracing, binds, and
//! serves until SIGTERM/Ctrl-C; or runs one subcommand (`probe`, `migrate`, `import`).
//! Everything else lives in the library.

use std::process::ExitCode;

use anyhow::Context;
use catalog_service::app::Application;
use catalog_service::command::{self, Command};
use catalog_service::config::Cli;
use catalog_service::database::DataFiles;
use clap::Parser;
use service_runtime as runtime;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (log_format, threads) = (cli.process.log_format, cli.process.worker_threads);
    match cli.command.clone() {
        Some(Command::Shared(service_runtime::probe::Command::Probe { url })) => {
            return service_runtime::probe::run(&url);
        }
        Some(Command::Migrate(args)) => {
            let tls = cli.tls.reload_settings();
            let url = cli.database_url.as_deref();
            let migrate = command::migrate(url, tls, args);
            return runtime::run_service("catalog-service migrate", log_format, threads, migrate);
        }
        Some(Command::Import(args)) => {
            let tls = cli.tls.reload_settings();
            let files = DataFiles {
                products: cli.products.clone(),
                customers: cli.customers.clone(),
            };
            let url = cli.database_url.as_deref();
            let import = command::import(url, tls, files, args);
            return runtime::run_service("catalog-service import", log_format, threads, import);
        }
        None => {}
    }
    runtime::run_service(
        "catalog-service",
        cli.process.log_format,
        cli.process.worker_threads,
        run(cli),
    )
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // First, so that a signal during start-up is handled, not fatal.
    let shutdown = runtime::shutdown_signal();
    let mut settings = cli.settings()?;
    let listener = runtime::bind(cli.listen, "--listen").await?;
    let ops_listener = cli.ops.ops_listen.bind("--ops-listen").await?;
    // After the checks above, so that a bad flag or a busy port is the only line logged; inside
    // the runtime, where the gRPC exporter's connection lives.
    let telemetry = runtime::otel::Telemetry::from_env("catalog")?;
    settings.tracer = telemetry.tracer();
    let app = Application::build(settings, listener).context("Discount client")?;
    // Closed after the drain, so that `/readyz` answers 503 all through it.
    let ops = runtime::ops::OpsPort::start("Catalog", ops_listener, app.readiness());
    app.run_until(shutdown).await;
    ops.stop().await;
    // Sends the spans still queued.
    telemetry.shutdown().await;
    Ok(())
}
