//! `catalog-service`: parses flags, loads certificates, binds, and serves until SIGTERM/Ctrl-C.
//! Everything else lives in the library.

use std::process::ExitCode;

use anyhow::Context;
use catalog_service::app::Application;
use catalog_service::config::Cli;
use clap::Parser;
use ecommerce_proto::runtime;

#[tokio::main]
async fn main() -> ExitCode {
    runtime::init_tracing();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("catalog-service: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = cli.settings()?;
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("--listen {}: cannot bind", cli.listen))?;
    let app = Application::build(settings, listener).context("Discount client")?;
    app.run_until(runtime::shutdown_signal())
        .await
        .context("serving HTTP")
}
