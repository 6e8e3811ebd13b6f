//! A service binary's frame: binding its listeners with errors that name the flag, and running
//! `main` (logging, the Tokio runtime, one log line and exit code 1 for a start-up error).

use crate::logging::{LogFormat, init_tracing};

/// Binds a TCP listener for the setting `flag`, with the accept queue of
/// [`admission::bind`] (deep enough for a flood); the error names the flag and the address.
pub async fn bind(
    addr: std::net::SocketAddr,
    flag: &str,
) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context;
    admission::bind(addr).with_context(|| format!("{flag} {addr}: cannot bind"))
}

/// Runs a service binary's `main`: sets up logging (`log_format`), builds the Tokio runtime
/// (`worker_threads`, default one per core), runs `service` to completion, and turns an error
/// into one log line and exit code 1. Never panics on a start-up error.
pub fn run_service<F>(
    name: &str,
    log_format: LogFormat,
    worker_threads: Option<u16>,
    service: F,
) -> std::process::ExitCode
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let _logs = init_tracing(log_format);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(threads) = worker_threads {
        builder.worker_threads(usize::from(threads));
    }
    let result = match builder.build() {
        Ok(runtime) => runtime.block_on(service),
        Err(err) => Err(anyhow::Error::new(err).context("cannot start the Tokio runtime")),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{name}: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
