//! Process-level behaviour shared by the service binaries: log set-up and the shutdown signal.

use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Keeps the background log writer alive; dropping it flushes what is still buffered.
#[derive(Debug)]
pub struct LogGuard {
    _worker: Option<tracing_appender::non_blocking::WorkerGuard>,
}

/// Installs the global `tracing` subscriber, writing to stderr in `format`, filtered by
/// `RUST_LOG` (default `info`).
///
/// Lines are handed to a background thread, so a request does not wait for stderr; the queue
/// is bounded and blocks rather than drops when full, so no line is lost and memory stays flat.
/// Per-request lines use the target `access` (`RUST_LOG=info,access=off` turns them off). Calling it twice is harmless: the
/// second call installs nothing.
pub fn init_tracing(format: LogFormat) -> LogGuard {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        // A small queue: enough to absorb bursts, while a writer that cannot keep up slows
        // requests down instead of growing memory (the default queue holds 128,000 lines).
        .buffered_lines_limit(4096)
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Text => builder.with_ansi(ansi).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    LogGuard {
        _worker: installed.is_ok().then_some(guard),
    }
}

/// A future that completes when the process is asked to stop: Ctrl-C (SIGINT) or SIGTERM.
///
/// The signal handlers are installed when this is called, not when the future is first
/// polled, so a signal that arrives during start-up is not lost (without a handler, SIGTERM
/// would kill the process on the spot). Call it first thing inside the runtime. A handler that
/// cannot be installed is logged and that signal ignored, rather than stopping the service.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, name: &'static str| match signal(kind) {
            Ok(stream) => Some(stream),
            Err(err) => {
                tracing::error!(%err, "cannot listen for {name}");
                None
            }
        };
        let mut interrupt = listen(SignalKind::interrupt(), "Ctrl-C (SIGINT)");
        let mut terminate = listen(SignalKind::terminate(), "SIGTERM");
        async move {
            tokio::select! {
                () = wait_for(interrupt.as_mut()) => tracing::info!("received Ctrl-C, shutting down"),
                () = wait_for(terminate.as_mut()) => tracing::info!("received SIGTERM, shutting down"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!("received Ctrl-C, shutting down");
    }
}

/// Waits for the next delivery of a signal, or forever if it has no handler.
#[cfg(unix)]
async fn wait_for(stream: Option<&mut tokio::signal::unix::Signal>) {
    match stream {
        Some(stream) => {
            stream.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// The graceful-shutdown future handed to a server.
pub type GracefulSignal = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Runs a server with graceful shutdown and a drain deadline.
///
/// `serve` receives a future that completes when `shutdown` does; the server should then stop
/// accepting connections and finish in-flight requests. If it has not finished `drain` after
/// the signal, this returns `None` and the caller exits anyway: shutdown never hangs.
pub async fn serve_with_drain<S, Fut, T>(
    shutdown: S,
    drain: std::time::Duration,
    serve: impl FnOnce(GracefulSignal) -> Fut,
) -> Option<T>
where
    S: std::future::Future<Output = ()> + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = Box::pin(async move {
        shutdown.await;
        let _ = draining_tx.send(());
    });
    let deadline = async move {
        match draining_rx.await {
            Ok(()) => tokio::time::sleep(drain).await,
            // The server ended on its own before any signal: nothing to time.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        result = serve(signal) => Some(result),
        () = deadline => {
            tracing::warn!(?drain, "drain deadline passed with requests still in flight; stopping anyway");
            None
        }
    }
}

/// Binds a TCP listener for the setting `flag`; the error names the flag and the address.
pub async fn bind(
    addr: std::net::SocketAddr,
    flag: &str,
) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context;
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("{flag} {addr}: cannot bind"))
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

/// The process's Prometheus registry: installed as the `metrics` recorder on first use, the
/// same handle afterwards (so several services in one test process share it harmlessly).
/// Histograms get fixed buckets from 0.5 ms to 2.5 s; a background thread folds recorded
/// samples into them every second, so memory stays flat under load.
pub fn prometheus() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            const BUCKETS: [f64; 12] = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ];
            let builder = metrics_exporter_prometheus::PrometheusBuilder::new();
            // Setting buckets fails only for an empty list.
            let builder = builder
                .set_buckets(&BUCKETS)
                .unwrap_or_else(|_| metrics_exporter_prometheus::PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            // The recorder queues histogram samples until they are folded into buckets; without
            // this upkeep they would pile up with every request.
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        upkeep.run_upkeep();
                        std::thread::sleep(std::time::Duration::from_secs(1));
                    }
                });
            if let Err(err) = spawned {
                tracing::error!(%err, "cannot start metrics upkeep: histograms will grow");
            }
            handle
        })
        .clone()
}

/// The content type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
