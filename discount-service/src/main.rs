//! `discount-service`: parses flags, loads certificates, sets up tracing, binds, and serves
//! until SIGTERM/Ctrl-C. Everything else lives in the library.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use discount_service::config::{Cli, METRICS_LISTEN_DEPRECATED};
use discount_service::server::DiscountServer;
use service_runtime as runtime;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(service_runtime::probe::Command::Probe { url }) = &cli.command {
        return service_runtime::probe::run(url);
    }
    runtime::run_service(
        "discount-service",
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
    let (ops_listen, ops_flag) = cli.ops_listen();
    let ops_listener = ops_listen.bind(ops_flag).await?;
    if cli.metrics_listen.is_some() {
        tracing::warn!("{METRICS_LISTEN_DEPRECATED}");
    }
    // After the checks above, so that a bad flag or a busy port is the only line logged; inside
    // the runtime, where the gRPC exporter's connection lives.
    let telemetry = runtime::otel::Telemetry::from_env("discount")?;
    settings.tracer = telemetry.tracer();
    let server = DiscountServer::build(settings, listener).context("TLS configuration")?;
    // Closed after the drain, so that `/readyz` answers 503 all through it.
    let ops = runtime::ops::OpsPort::start("Discount", ops_listener, server.serving());
    let served = server.run_until(shutdown).await.context("serving gRPC");
    ops.stop().await;
    // Sends the spans still queued.
    telemetry.shutdown().await;
    served
}
