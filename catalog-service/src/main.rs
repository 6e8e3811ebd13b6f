//! `catalog-service`: parses flags, loads data and certificates, binds, and serves until
//! SIGTERM/Ctrl-C. Everything else lives in the library.

use std::process::ExitCode;

use anyhow::Context;
use catalog_service::app::Application;
use catalog_service::config::Cli;
use clap::Parser;
use service_runtime as runtime;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(service_runtime::probe::Command::Probe { url }) = &cli.command {
        return service_runtime::probe::run(url);
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
    let settings = cli.settings()?;
    let listener = runtime::bind(cli.listen, "--listen").await?;
    let ops_listener = runtime::bind(cli.ops_listen, "--ops-listen").await?;
    let app = Application::build(settings, listener, ops_listener).context("Discount client")?;
    app.run_until(shutdown).await.context("serving HTTP")
}
